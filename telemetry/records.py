"""The record formats Watchloop ingests, and their validation.

An inference log (JSON object)::

    {"request_id": "r-1", "model": "fraud", "version": "3",
     "event_time": "2026-11-25T10:00:00.123Z",   # ISO 8601, or Unix seconds / milliseconds
     "latency_ms": 4.2, "status": "ok",           # "ok" or "error"; "error" may carry "error"
     "features": {"amount": 12.5, "country": "DE"},  # numbers -> numeric, strings -> categorical
     "prediction": 0.93}                          # a score (number) or a class (string)

A delayed label::

    {"request_id": "r-1", "label": 1, "label_time": "2026-11-26T08:00:00Z"}

A naive timestamp is read as UTC. Unknown keys are ignored so that producers may add fields.
Validation runs in pydantic-core (Rust), one record at a time, so that a bad record is
rejected with a reason naming its field while the rest of its batch is kept.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=256, strip_whitespace=True)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
FeatureValue = bool | FiniteFloat | str | None

#: Records above this many bytes of JSON are dead-lettered rather than stored.
MAX_RECORD_BYTES = 64 * 1024
#: Retention of the tables (their TTLs in migration 0001). An older record would be dropped
#: by ClickHouse on insert, so it is dead-lettered instead.
LOG_RETENTION = timedelta(days=90)
LABEL_RETENTION = timedelta(days=180)


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class InferenceLogRecord(_Record):
    """One prediction served by a model version."""

    request_id: Identifier
    model: Identifier
    version: Annotated[str, StringConstraints(min_length=1, max_length=128)] | int
    event_time: datetime
    latency_ms: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    status: Literal["ok", "error"] = "ok"
    error: Annotated[str, StringConstraints(max_length=4096)] = ""
    features: dict[Identifier, FeatureValue] = Field(default_factory=dict)
    prediction: FiniteFloat | str | None = None


class LabelRecord(_Record):
    """The ground truth for an earlier prediction, arriving later."""

    request_id: Identifier
    label: bool | int | FiniteFloat | str
    label_time: datetime


@dataclass(frozen=True)
class Rejection:
    """A record that could not be accepted, with the raw payload and why."""

    index: int
    payload: str
    reason: str


def utc(moment: datetime) -> datetime:
    """Return ``moment`` as an aware UTC datetime (naive values are taken to be UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


_UNION_BRANCH = re.compile(r"^(constrained-str|str|int|float|bool|none|.*\[.*\])$")


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each bad field and what was expected.

    Pydantic names the branches of a union in an error's location (``version.int``); those
    are dropped, and the branches' messages joined, so the reason names the field itself.
    """
    by_field: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False):
        path = [str(p) for p in err["loc"] if not _UNION_BRANCH.match(str(p))]
        messages = by_field.setdefault(".".join(path) or "record", [])
        if err["msg"] not in messages:
            messages.append(err["msg"])
    return "; ".join(f"{where}: {' or '.join(msgs)}" for where, msgs in by_field.items())


def payload_text(raw: Any) -> str:
    """The raw record as text for the dead-letter table (never raises)."""
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace")
    if isinstance(raw, str):
        return raw
    try:
        return json.dumps(raw, default=str, allow_nan=True)
    except (TypeError, ValueError):
        return repr(raw)


def split_features(features: dict[str, FeatureValue]) -> tuple[dict[str, float], dict[str, str]]:
    """Split a feature dict into numeric and categorical maps.

    Numbers (and booleans, as 0/1) are numeric, strings categorical; ``None`` is a missing value
    and is left out. Validation has already refused non-finite numbers.
    """
    categorical = {k: v for k, v in features.items() if v.__class__ is str}
    if len(categorical) == len(features):
        return {}, categorical
    numeric = {k: float(v) for k, v in features.items()
               if v is not None and v.__class__ is not str}
    return numeric, categorical
