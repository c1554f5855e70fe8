"""Load a DataFrame of features as inference logs: backfills, benchmarks and tests.

``log_columns`` turns a frame into the column lists of ``inference_logs`` for
``Store.insert_columns`` (the fastest insert path). Unlike ``TelemetryWriter`` it neither
validates nor deduplicates: use it for trusted bulk loads only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def log_columns(
    frame: Any,
    model: str,
    version: str,
    event_ms: Sequence[int] | np.ndarray,
    ingest_ms: int | Sequence[int],
    *,
    prediction: str | None = None,
    request_ids: Sequence[str] | None = None,
    latency_ms: Sequence[float] | float = 1.0,
    status: Sequence[str] | str = "ok",
    source: str = "backfill",
) -> dict[str, list[Any]]:
    """Column lists of ``inference_logs`` for the rows of ``frame``.

    Numeric columns go to ``numeric_features`` and the others to ``categorical_features``;
    missing values are left out of the maps, as the writer does. ``prediction`` names the
    column holding the model's output (a number is a score, text a class).
    """
    import pandas as pd

    n = len(frame)
    names = [c for c in frame.columns if c != prediction]
    numeric = [c for c in names if pd.api.types.is_numeric_dtype(frame[c])]
    categorical = [c for c in names if c not in numeric]
    numeric_maps = _maps(frame, numeric, float)
    categorical_maps = _maps(frame, categorical, str)
    scores: list[Any] = [None] * n
    classes: list[str] = [""] * n
    if prediction is not None:
        column = frame[prediction]
        if pd.api.types.is_numeric_dtype(column):
            scores = [None if pd.isna(v) else float(v) for v in column.tolist()]
        else:
            classes = ["" if pd.isna(v) else str(v) for v in column.tolist()]
    ids = list(request_ids) if request_ids is not None else [
        f"{model}-{version}-{i}" for i in range(n)]
    return {
        "request_id": ids,
        "model": [model] * n,
        "model_version": [str(version)] * n,
        "event_time": [int(t) for t in event_ms],
        "ingest_time": [int(ingest_ms)] * n if np.isscalar(ingest_ms)
        else [int(t) for t in ingest_ms],  # type: ignore[union-attr]
        "latency_ms": [float(latency_ms)] * n if np.isscalar(latency_ms)
        else [float(x) for x in latency_ms],  # type: ignore[union-attr]
        "status": [status] * n if isinstance(status, str) else list(status),
        "error": [""] * n,
        "numeric_features": numeric_maps,
        "categorical_features": categorical_maps,
        "prediction": scores,
        "prediction_label": classes,
        "source": [source] * n,
    }


def _maps(frame: Any, names: list[str], cast: type) -> list[dict[str, Any]]:
    if not names:
        return [{} for _ in range(len(frame))]
    columns = [frame[name].tolist() for name in names]
    out = []
    for values in zip(*columns, strict=True):
        out.append({name: cast(v) for name, v in zip(names, values, strict=True)
                    if v is not None and v == v})  # v == v is False for NaN
    return out
