"""What a training entrypoint receives and returns.

A Python entrypoint (``module:function``) is called in a subprocess as
``function(data, spec) -> TrainedModel``: ``data`` is a pandas DataFrame of the labelled
rows (``feedback.dataset.read_rows``: one column per feature, ``label``, ``label_value``),
``spec`` a ``TrainingSpec``. A command entrypoint runs with ``WATCHLOOP_RUN_DIR`` set and
finds ``spec.json`` and ``data.parquet`` there; it writes a TorchScript ``out/model.pt``
scoring ``[n, len(features)]`` floats to ``[n]`` scores and ``out/result.json``:
``{"features": [...], "params": {...}, "metrics": {...}}``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["MODEL_FILE", "RESULT_FILE", "TrainedModel", "TrainingSpec"]

SPEC_FILE = "spec.json"
DATA_FILE = "data.parquet"
MODEL_FILE = "out/model.pt"
RESULT_FILE = "out/result.json"


@dataclass(frozen=True)
class TrainingSpec:
    """One run's inputs: which model, the rows' window and checksum, the params."""

    model: str
    run_id: str
    window: dict[str, str]  # feedback.dataset.DataWindow.as_dict()
    rows: int
    checksum: str
    features: tuple[str, ...] = ()  # the champion's features; empty: the trainer's choice
    params: dict[str, Any] = field(default_factory=dict)

    def save(self, run_dir: Path) -> Path:
        path = run_dir / SPEC_FILE
        path.write_text(json.dumps(asdict(self), indent=1, sort_keys=True))
        return path

    @classmethod
    def load(cls, run_dir: Path) -> TrainingSpec:
        raw = json.loads((run_dir / SPEC_FILE).read_text())
        return cls(**{**raw, "features": tuple(raw.get("features", ()))})


@dataclass
class TrainedModel:
    """What a Python entrypoint returns: a ``torch.nn.Module`` scoring ``[n, len(features)]``
    floats to ``[n]`` scores, the features in its input order, and what to log."""

    module: Any
    features: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
