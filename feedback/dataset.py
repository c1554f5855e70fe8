"""Training and evaluation rows, read point-in-time from the store.

A row is one successful inference of any version of the model whose event time lies in the
window, with its features, joined to the newest label ingested by ``as_of``; logs ingested
after ``as_of`` are not seen either. The same ``(model, start, end, as_of)`` reads the same
rows however much arrived later, so a run recorded with them can be reproduced exactly; the
checksum says whether it was.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from telemetry import PointInTime, Store
from telemetry.clock import utc
from telemetry.extras import require

__all__ = ["DataWindow", "count_labelled", "read_rows", "rows_checksum"]

LABEL_COLUMNS = ("request_id", "event_time", "model_version", "prediction", "label",
                 "label_value")


@dataclass(frozen=True)
class DataWindow:
    """Rows of ``model`` with event times in ``[start, end)``, as the store knew them at
    ``as_of``."""

    model: str
    start: datetime
    end: datetime
    as_of: datetime

    def as_dict(self) -> dict[str, str]:
        return {"model": self.model, "start": utc(self.start).isoformat(),
                "end": utc(self.end).isoformat(), "as_of": utc(self.as_of).isoformat()}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> DataWindow:
        return cls(data["model"], datetime.fromisoformat(data["start"]),
                   datetime.fromisoformat(data["end"]), datetime.fromisoformat(data["as_of"]))


def _joined_sql(window: DataWindow) -> tuple[str, dict[str, Any]]:
    pit = PointInTime(window.as_of)
    params = {"m": window.model, "s": utc(window.start), "e": utc(window.end), **pit.params}
    logs = (f"SELECT * FROM {pit.source('inference_logs')} WHERE model = {{m:String}} "
            "AND status = 'ok' AND event_time >= {s:DateTime64(3, 'UTC')} "
            "AND event_time < {e:DateTime64(3, 'UTC')}")
    sql = (
        "SELECT r.request_id AS request_id, r.event_time AS event_time, "
        "r.model_version AS model_version, r.prediction AS prediction, "
        "r.numeric_features AS numeric_features, "
        "r.categorical_features AS categorical_features, "
        "l.label AS label, l.label_value AS label_value "
        f"FROM ({logs}) AS r INNER JOIN ("
        "SELECT request_id, argMax(label, ingest_time) AS label, "
        "argMax(label_value, ingest_time) AS label_value "
        f"FROM {pit.source('labels')} WHERE request_id IN (SELECT request_id FROM ({logs})) "
        "GROUP BY request_id) AS l ON r.request_id = l.request_id"
    )
    return sql, params


def count_labelled(store: Store, window: DataWindow) -> int:
    """How many labelled rows the window holds (no rows are pulled)."""
    sql, params = _joined_sql(window)
    return int(store.scalar(f"SELECT count() FROM ({sql})", params))


def read_rows(store: Store, window: DataWindow) -> Any:
    """The window's labelled rows as a pandas DataFrame, one column per feature (numeric
    features as floats, categorical ones as text), ordered by event time and request id."""
    pd = require("pandas", "training data")
    sql, params = _joined_sql(window)
    raw = store.query_df(f"{sql} ORDER BY event_time, request_id", params)
    columns: dict[str, Any] = {name: raw.get(name, []) for name in LABEL_COLUMNS}
    frame = pd.DataFrame(columns)
    for kind in ("numeric_features", "categorical_features"):
        if kind not in raw or raw.empty:
            continue
        expanded = pd.DataFrame.from_records(list(raw[kind]), index=raw.index)
        if kind == "numeric_features":
            expanded = expanded.astype("float64")
        frame = frame.join(expanded[sorted(expanded.columns)])
    return frame.reset_index(drop=True)


def rows_checksum(frame: Any) -> str:
    """A digest of the rows' ids, features and labels: equal for equal training data."""
    pd = require("pandas", "training data")
    if frame.empty:
        return hashlib.sha256(b"").hexdigest()[:16]
    canonical = frame.drop(columns=["event_time"], errors="ignore")
    if "request_id" in canonical:
        canonical = canonical.sort_values("request_id")
    canonical = canonical[sorted(canonical.columns)]
    hashed = pd.util.hash_pandas_object(canonical, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]
