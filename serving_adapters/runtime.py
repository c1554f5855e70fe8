"""What our TorchServe handler and Triton ``model.py`` share: load a version, score, log.

Copied next to them in every packaged version (with ``payload_log.py``), so it imports
nothing from Watchloop. A version directory holds ``model.pt`` (TorchScript) and
``watchloop-model.json`` (``ModelRuntime.META_FILE``): the model's name, version, ordered
feature names, and where to publish payload logs.

The model contract: a float tensor ``[n, len(features)]`` in, ``n`` scores out (``[n]`` or
``[n, 1]``).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:  # a sibling file inside a server (see serving_adapters.packaging)
    from watchloop_payload_log import PayloadLog, PayloadLogConfig
except ImportError:  # pragma: no cover - exercised inside the servers
    from serving_adapters.payload_log import PayloadLog, PayloadLogConfig

__all__ = ["VERIFY_PREFIX", "BadRequest", "ModelRuntime", "failure_text", "request_ids"]

META_FILE = "watchloop-model.json"
# Requests whose id starts so are Watchloop's own warm-up and replay: never logged as traffic.
VERIFY_PREFIX = "watchloop-verify-"
MODEL_FILE = "model.pt"


class BadRequest(ValueError):
    """The request cannot be scored as sent (the message says why); the model is fine."""


class ModelRuntime:
    """One loaded version: scores instances and publishes each request's inference log."""

    META_FILE = META_FILE

    def __init__(self, directory: Path | str) -> None:
        import torch

        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text())
        self.model_name: str = meta["model"]
        self.version: str = str(meta["version"])
        self.features: list[str] = list(meta["features"])
        torch.set_num_threads(1)  # one worker per core: intra-op threads only contend
        self._torch = torch
        self._model = torch.jit.load(str(directory / MODEL_FILE), map_location="cpu").eval()
        config = PayloadLogConfig.from_dict(meta.get("payload_log"))
        self.payload_log = PayloadLog(config) if config else None

    def matrix(self, instances: list[dict[str, Any]]) -> list[list[float]]:
        """Each instance's features in the model's order; a missing or non-numeric one is a
        ``BadRequest`` naming it."""
        rows = []
        for i, instance in enumerate(instances):
            features = instance.get("features") if isinstance(instance, dict) else None
            if not isinstance(features, dict):
                raise BadRequest(f"instance {i}: expected an object with a 'features' object")
            row = []
            for name in self.features:
                value = features.get(name)
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise BadRequest(f"instance {i}: feature {name!r} must be a number, "
                                     f"got {type(value).__name__}")
                row.append(float(value))
            rows.append(row)
        return rows

    def score(self, rows: list[list[float]]) -> list[float]:
        """The model's scores for a feature matrix, one per row."""
        torch = self._torch
        with torch.inference_mode():
            matrix = torch.tensor(rows, dtype=torch.float32).reshape(-1, len(self.features))
            output = self._model(matrix)
        scores = output.reshape(-1).tolist()
        if len(scores) != len(rows):
            raise RuntimeError(f"model returned {len(scores)} scores for {len(rows)} rows "
                               f"(output shape {tuple(output.shape)})")
        return scores

    def log(self, request_ids: list[str], rows: list[list[float]], scores: list[float] | None,
            started: float, error: str = "") -> None:
        """Queue one inference log per instance (``started`` is a ``time.perf_counter``)."""
        if self.payload_log is None:
            return
        latency_ms = (time.perf_counter() - started) * 1000
        now = datetime.now(UTC).isoformat()
        for i, request_id in enumerate(request_ids):
            if request_id.startswith(VERIFY_PREFIX):
                continue
            self.payload_log.publish({
                "request_id": request_id,
                "model": self.model_name,
                "version": self.version,
                "event_time": now,
                "latency_ms": latency_ms,
                "status": "error" if error else "ok",
                "error": error,
                "features": dict(zip(self.features, rows[i], strict=True)) if i < len(rows) else {},
                "prediction": scores[i] if scores is not None else None,
            })

    @property
    def lost(self) -> int:
        """Payload logs that did not reach the broker so far."""
        return self.payload_log.lost if self.payload_log else 0


def request_ids(instances: list[Any]) -> list[str]:
    """Each instance's ``request_id``, or a fresh one where it has none."""
    ids = []
    for instance in instances:
        given = instance.get("request_id") if isinstance(instance, dict) else None
        ids.append(str(given) if given not in (None, "") else uuid.uuid4().hex)
    return ids


def failure_text(exc: BaseException) -> str:
    """An exception's last line (TorchScript prefixes a page of traceback), at most 300
    characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]
