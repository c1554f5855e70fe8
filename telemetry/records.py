"""The record formats Watchloop ingests: the contract every source is held to.

An inference log (JSON object)::

    {"request_id": "r-1", "model": "fraud", "version": "3",
     "event_time": "2026-11-25T10:00:00.123Z",
     "latency_ms": 4.2, "status": "ok",
     "features": {"amount": 12.5, "country": "DE"},
     "prediction": 0.93}

A delayed label::

    {"request_id": "r-1", "label": 1, "label_time": "2026-11-26T08:00:00Z"}

The rules, field by field (``null`` is the same as an absent field):

==============  =========================================================================
request_id      required string; ASCII whitespace trimmed; 1-256 characters
model           required string, as request_id
version         required string (trimmed, 1-128 characters) or whole number (stored as text)
event_time      required; ISO 8601 text (``YYYY-MM-DD[THH:MM[:SS[.f]]][Z|+HH:MM]``) or a Unix
                time number in s, ms, µs or ns, told apart by magnitude (below 1e11, 1e14,
                1e17 and 1e20); not older than the retention, not more than
                ``max_future_skew`` ahead of the ingest time
latency_ms      required number, >= 0
status          ``"ok"`` (the default) or ``"error"``
error           string, at most 4096 characters
features        object; keys of 1-256 characters; values finite numbers, booleans (stored as
                1/0 with the numbers), strings (categorical) or null (missing)
prediction      number, boolean or string (a class)
label           number, boolean or string of 1-256 characters
label_time      as event_time (retention: 180 days)
==============  =========================================================================

Every record is a JSON object in valid UTF-8, at most ``MAX_RECORD_BYTES`` long, with no key
given twice (at the top level or in ``features``); strings hold no NUL character; numbers are
finite doubles (a literal beyond ±1.8e308 is refused, as are NaN and Infinity). Unknown keys
are ignored so that producers may add fields. Every problem of a record is reported, each
as ``field: what was expected``.

The same rules run in two places: in ClickHouse for inference logs (``intake.py``, fast) and
here in pydantic (labels, and the explanation of records the store cannot read).
``tests/test_ingest_contract.py`` holds the two to the same answers with Hypothesis.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .clock import from_epoch_ms, utc  # noqa: F401  (utc: part of this module's API)

#: Records above this many bytes of JSON are dead-lettered rather than stored.
MAX_RECORD_BYTES = 64 * 1024
#: Retention of the tables (their TTLs in migration 0001). An older record would be dropped
#: by ClickHouse on insert, so it is dead-lettered instead.
LOG_RETENTION = timedelta(days=90)
LABEL_RETENTION = timedelta(days=180)
#: How far ahead of the ingest time an event may be (clock skew between hosts).
MAX_FUTURE_SKEW = timedelta(minutes=5)
#: Whitespace trimmed from identifiers: ASCII only, the same set in SQL and here.
WHITESPACE = " \t\n\r\f\v"
MAX_IDENTIFIER = 256
MAX_VERSION = 128
MAX_ERROR = 4096
#: Whole-number versions must stay below this, so that their text is exact in a double.
MAX_WHOLE_VERSION = 10**15

#: ISO 8601 in its extended form, the only text form of a time: the same pattern runs in SQL.
ISO_TIME = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,9})?)?"
    r"(Z|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)?)?$"
)
_ISO_TIME = re.compile(ISO_TIME)
#: Unix time numbers below 1e11 are seconds, then ms, µs and ns; 1e20 and above is refused.
#: As (limit, multiplier, divisor): the SQL does the same float operations.
EPOCH_LIMITS = ((1e11, 1000.0, 1.0), (1e14, 1.0, 1.0), (1e17, 1.0, 1e3), (1e20, 1.0, 1e6))


class RecordProblem(ValueError):
    """A record that cannot be read at all (not JSON, not an object, too large, ...)."""


def json_type(value: Any) -> str:
    """The JSON name of a decoded value, for messages ("got an array")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _problem(message: str) -> PydanticCustomError:
    return PydanticCustomError("watchloop", message)


def _check_text(value: str, limit: int | None) -> str:
    if "\x00" in value:
        raise _problem("must not contain NUL characters")
    if limit is not None and len(value) > limit:
        raise _problem(f"must have at most {limit} characters")
    return value


def _identifier(value: Any, limit: int = MAX_IDENTIFIER) -> str:
    if not isinstance(value, str):
        raise _problem(f"expected a string, got {json_type(value)}")
    value = value.strip(WHITESPACE)
    if not value:
        raise _problem("must not be empty")
    return _check_text(value, limit)


def _error_text(value: Any) -> str:
    if not isinstance(value, str):
        raise _problem(f"expected a string, got {json_type(value)}")
    return _check_text(value, MAX_ERROR)


def _label(value: Any) -> float | str:
    if isinstance(value, str):
        return _identifier(value)
    if value is None or isinstance(value, (dict, list)):
        raise _problem(f"expected a number, a string or a boolean, got {json_type(value)}")
    return _scalar(value)


def _version(value: Any) -> str:
    if isinstance(value, str):
        return _identifier(value, MAX_VERSION)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # abs() first: math.isfinite on an int beyond a double raises OverflowError
        if abs(value) >= MAX_WHOLE_VERSION or not math.isfinite(value) \
                or value != math.floor(value):
            raise _problem("a number must be a whole number below 1e15")
        return str(int(value))
    raise _problem(f"expected a string or a whole number, got {json_type(value)}")


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _problem(f"expected a number, got {json_type(value)}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise _problem("must be a finite number")
    return number


def _latency(value: Any) -> float:
    number = _number(value)
    if number < 0:
        raise _problem("must be greater than or equal to 0")
    return number


def _scalar(value: Any) -> float | str | None:
    """A feature value or a prediction: number (booleans as 1/0), string, or missing."""
    if value is None or isinstance(value, str):
        return None if value is None else _check_text(value, None)
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return _number(value)
    raise _problem(f"expected a number, a string or a boolean, got {json_type(value)}")


def unix_number_ms(number: float) -> int:
    """Milliseconds since the epoch of a Unix time in s, ms, µs or ns (told by magnitude)."""
    for limit, multiplier, divisor in EPOCH_LIMITS:
        if number < limit:
            return int(number * multiplier / divisor)
    raise _problem("a Unix time number must be below 1e20 (nanoseconds)")


def _moment(value: Any) -> int:
    """An event or label time as milliseconds since the epoch."""
    if isinstance(value, datetime):  # from a Python caller; JSON brings text or numbers
        value = value.isoformat()
    if isinstance(value, str):
        if not _ISO_TIME.match(value):
            raise _problem("expected ISO 8601 text such as 2026-11-25T10:00:00Z, "
                           "or a Unix time number")
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _problem("not a valid date or time") from None
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = _number(value)
        if number < 0:
            raise _problem("a Unix time number must not be negative")
        return unix_number_ms(number)
    raise _problem(f"expected ISO 8601 text or a Unix time number, got {json_type(value)}")


def ms_text(ms: int) -> str:
    """A time in the form messages use (and ClickHouse prints): 2026-11-25 10:00:00.123."""
    return from_epoch_ms(ms).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _bounded_time(retention: timedelta) -> Any:
    def validate(value: Any, info: ValidationInfo) -> datetime:
        ms = _moment(value)
        bounds = (info.context or {}).get("bounds")
        if bounds is not None:
            now_ms, skew = bounds
            if ms < now_ms - retention.total_seconds() * 1000:
                raise _problem(f"{ms_text(ms)} is older than the {retention.days}-day retention")
            if ms > now_ms + skew.total_seconds() * 1000:
                raise _problem(f"{ms_text(ms)} is more than {skew.total_seconds():g} s ahead "
                               "of the ingest time (ingest.max_future_skew)")
        if not -62135596800000 <= ms <= 253402300799999:
            raise _problem(f"{ms} ms is outside the years 1 to 9999")
        return from_epoch_ms(ms)

    return PlainValidator(validate, json_schema_input_type=str | float)


def _features(value: Any) -> dict[str, float | str]:
    """The object itself and its keys; each value is then checked as a ``Scalar``."""
    if not isinstance(value, dict):
        raise _problem(f"expected an object, got {json_type(value)}")
    duplicates = getattr(value, "duplicates", ())
    if duplicates:
        raise _problem(f"duplicate key '{duplicates[0]}'")
    if any(not isinstance(k, str) or not k for k in value):
        raise _problem("keys must not be empty")
    if any(len(k) > MAX_IDENTIFIER for k in value):
        raise _problem(f"keys must have at most {MAX_IDENTIFIER} characters")
    if any("\x00" in k for k in value):
        raise _problem("keys must not contain NUL characters")
    return value


Identifier = Annotated[str, PlainValidator(_identifier, json_schema_input_type=str)]
Version = Annotated[str, PlainValidator(_version, json_schema_input_type=str | int)]
Scalar = Annotated[float | str | None,
                   PlainValidator(_scalar, json_schema_input_type=float | str | bool | None)]
Text = Annotated[str, PlainValidator(_error_text, json_schema_input_type=str)]
Features = Annotated[dict[str, Scalar], BeforeValidator(_features),
                     WithJsonSchema({"type": "object", "additionalProperties": {
                         "type": ["number", "string", "boolean", "null"]}})]


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise _problem(f"expected a JSON object, got {json_type(data)}")
        duplicates = getattr(data, "duplicates", ())
        if duplicates:
            raise _problem(f"duplicate key '{duplicates[0]}'")
        return {k: v for k, v in data.items() if v is not None}


def _known_model(model: str, info: ValidationInfo) -> str:
    models = (info.context or {}).get("models")
    if models and model not in models:
        raise _problem(f"unknown model '{model}' (configured models: {', '.join(models)})")
    return model


class InferenceLogRecord(_Record):
    """One prediction served by a model version."""

    request_id: Annotated[Identifier, Field(
        description=f"unique per request; joins its label (at most {MAX_IDENTIFIER} "
                    "characters)")]
    model: Annotated[Identifier, AfterValidator(_known_model),
                     Field(description="the model's name (one of `models:` when configured)")]
    version: Annotated[Version, Field(description="the model version that served it")]
    event_time: Annotated[datetime, _bounded_time(LOG_RETENTION), Field(
        description="when it was served: ISO 8601, or Unix time in s, ms, µs or ns; within "
                    f"{LOG_RETENTION.days} days and at most ingest.max_future_skew ahead")]
    latency_ms: Annotated[float, PlainValidator(_latency, json_schema_input_type=float),
                          Field(description="serving latency in milliseconds, >= 0")]
    status: Literal["ok", "error"] = "ok"
    error: Text = ""
    features: Features = Field(default_factory=dict, description=(
        "feature name to value: numbers are numeric features, text and booleans categorical"))
    prediction: Scalar = Field(None, description="a score (number) or a class (text)")


class LabelRecord(_Record):
    """The ground truth for an earlier prediction, arriving later."""

    request_id: Annotated[Identifier, Field(description="the request it labels")]
    label: Annotated[float | str, PlainValidator(_label, json_schema_input_type=float | str),
                     Field(description="the true value (number) or class (text)")]
    label_time: Annotated[datetime, _bounded_time(LABEL_RETENTION), Field(
        description="when the truth became known: ISO 8601 or Unix time in s, ms, µs or ns")]


@dataclass(frozen=True)
class Rejection:
    """A record that could not be accepted, with the raw payload and why."""

    index: int
    payload: str
    reason: str


class _Pairs(dict):
    """A decoded JSON object that remembers the keys it was given more than once."""

    duplicates: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, Any]]) -> dict:
    decoded = _Pairs(pairs)
    if len(decoded) != len(pairs):
        seen: set[str] = set()
        decoded.duplicates = tuple(k for k, _ in pairs if k in seen or seen.add(k))
    return decoded


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _finite_int(text: str) -> int:
    value = int(text)
    try:
        float(value)
    except OverflowError:
        raise ValueError(f"number {text[:40]}... is out of range") from None
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_record(raw: bytes | str, max_bytes: int = MAX_RECORD_BYTES) -> Any:
    """Decode one record's JSON as strictly as the store reads it, or raise RecordProblem."""
    if len(raw) > max_bytes:
        raise RecordProblem(f"record: {len(raw)} bytes exceeds the limit of {max_bytes} bytes")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise RecordProblem("record: not valid UTF-8") from None
    try:
        value = json.loads(raw, object_pairs_hook=_object, parse_float=_finite_float,
                           parse_int=_finite_int, parse_constant=_no_constant)
        if "\\u" in raw:  # a lone surrogate escape decodes, but is no Unicode text
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    except RecursionError:
        raise RecordProblem("record: invalid JSON: nested too deeply") from None
    except UnicodeEncodeError:
        raise RecordProblem("record: invalid JSON: a lone surrogate in a \\u escape") from None
    except ValueError as exc:
        raise RecordProblem(f"record: invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RecordProblem(f"record: expected a JSON object, got {json_type(value)}")
    return value


def describe_validation_error(exc: ValidationError) -> str:
    """Every problem of a record on one line, each as ``field: what was expected``."""
    problems: list[str] = []
    for err in exc.errors(include_url=False):
        path = ".".join(str(p) for p in err["loc"]) or "record"
        message = err["msg"]
        if err["type"] == "literal_error":
            message = "expected 'ok' or 'error'"
        problems.append(f"{path}: {message}")
    return "; ".join(problems)


def payload_text(raw: Any) -> str:
    """The raw record as text for the dead-letter table (never raises)."""
    if isinstance(raw, bytes):
        return raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    if isinstance(raw, str):
        return raw.encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "\ufffd")
    try:
        return json.dumps(raw, default=str, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        return repr(raw)[:MAX_RECORD_BYTES]


def split_features(features: dict[str, float | str | None]) -> tuple[dict[str, float],
                                                                     dict[str, str]]:
    """Split validated features into the numeric and categorical maps the store keeps.

    Numbers (booleans already 1/0) are numeric, strings categorical; ``None`` is a missing
    value and is left out.
    """
    numeric = {k: v for k, v in features.items() if v is not None and v.__class__ is not str}
    categorical = {k: v for k, v in features.items() if v.__class__ is str}
    return numeric, categorical
