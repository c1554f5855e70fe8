"""Validate and store a batch of inference logs inside ClickHouse.

Python touches each raw record only to number it: the batch goes to a scratch table as JSON
Lines, where ClickHouse's JSONEachRow parser reads every field as text. One INSERT ... SELECT
then parses and checks the fields, flags records whose request id is already stored or
repeated in the batch, and the accepted rows are copied into ``inference_logs``. Rejected
records come back as (index, reason). A line ClickHouse cannot parse at all is skipped by the
parser (``input_format_allow_errors_ratio``); its index is missing from the scratch table and
is reported as unparsed, so the caller can explain it and dead-letter it.

The checks mirror ``records.InferenceLogRecord``; ``tests/test_ingest.py`` runs the same bad
records through both paths.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .records import LOG_RETENTION
from .store import Store

LOG_COLUMNS = (
    "request_id", "model", "model_version", "event_time", "ingest_time", "latency_ms", "status",
    "error", "numeric_features", "categorical_features", "prediction", "prediction_label", "source",
)
_INTAKE_COLUMNS = ("request_id", "model", "version", "event_time", "latency_ms", "status",
                   "error", "features", "prediction")
_JSON_AS_TEXT = {
    "input_format_skip_unknown_fields": 1,
    "input_format_json_read_numbers_as_strings": 1,
    "input_format_json_read_bools_as_strings": 1,
    "input_format_json_read_objects_as_strings": 1,
    "input_format_json_read_arrays_as_strings": 1,
    "input_format_allow_errors_ratio": 1,
    "input_format_allow_errors_num": 1_000_000_000,
    # Blocks of a few thousand rows let the parse that follows use every core (one block is
    # read by one thread): about 20% faster per batch of 10k on 2 cores.
    "max_insert_block_size": 2_500,
    "min_insert_block_size_rows": 2_500,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The reason given to a record whose nested JSON ClickHouse cannot read (e.g. a NaN inside
# ``features``): it is handed back as unparsed, for the pydantic model to explain.
_UNREADABLE = "unreadable"
_EMPTY_OBJECT = re.compile(rb"^\{\s*\}$")

# Event time: ISO 8601 text, or Unix seconds, or milliseconds when above 2e10 (as pydantic).
_EVENT_TIME = """
    if(toFloat64OrNull(event_time) IS NOT NULL,
       fromUnixTimestamp64Milli(toInt64(if(toFloat64OrZero(event_time) > 2e10,
                                           toFloat64OrZero(event_time),
                                           toFloat64OrZero(event_time) * 1000)), 'UTC'),
       parseDateTime64BestEffortOrNull(event_time, 3, 'UTC'))"""

# Parsed fields and the reason a record is refused ('' when it is fine). Conditions are
# checked in order, so a record is refused for its first problem, as the Python path does.
_PARSE = """
SELECT
    __wl_seq,
    reason,
    ifNull(rid, '') AS request_id,
    ifNull(mdl, '') AS model,
    ifNull(ver, '') AS model_version,
    ifNull(ev, toDateTime64(0, 3, 'UTC')) AS event_time,
    {{ingest:DateTime64(3, 'UTC')}} AS ingest_time,
    ifNull(lat, 0) AS latency_ms,
    st AS status,
    err AS error,
    mapFromArrays(
        arrayConcat(arrayMap(x -> x.1, numbers), arrayMap(x -> x.1, flags)),
        arrayConcat(arrayMap(x -> toFloat64OrZero(x.2), numbers),
                    arrayMap(x -> if(x.2 = 'true', 1., 0.), flags))) AS numeric_features,
    mapFromArrays(arrayMap(x -> x.1, strings),
                  arrayMap(x -> JSONExtractString(x.2), strings)) AS categorical_features,
    score AS prediction,
    if(score IS NULL, ifNull(raw_prediction, ''), '') AS prediction_label,
    {{source:String}} AS source
FROM (
WITH
    nullIf(trimBoth(ifNull(request_id, '')), '') AS rid,
    nullIf(trimBoth(ifNull(model, '')), '') AS mdl,
    nullIf(ifNull(version, ''), '') AS ver,
    {event_time} AS ev,
    toFloat64OrNull(latency_ms) AS lat,
    ifNull(status, 'ok') AS st,
    ifNull(features, '{{}}') AS feats,
    JSONExtractKeysAndValuesRaw(feats) AS kv,
    arrayFilter(x -> x.2 NOT IN ('null', 'true', 'false') AND NOT startsWith(x.2, '"'), kv)
        AS numbers,
    arrayFilter(x -> x.2 IN ('true', 'false'), kv) AS flags,
    arrayFilter(x -> startsWith(x.2, '"'), kv) AS strings,
    arrayFirst(x -> toFloat64OrNull(x.2) IS NULL OR NOT isFinite(toFloat64OrZero(x.2)),
               numbers) AS bad_feature,
    toFloat64OrNull(prediction) AS score,
    multiIf(
        rid IS NULL, 'request_id: Field required',
        length(rid) > 256, 'request_id: String should have at most 256 characters',
        mdl IS NULL, 'model: Field required',
        length(mdl) > 256, 'model: String should have at most 256 characters',
        ver IS NULL, 'version: Field required',
        length(ver) > 128, 'version: String should have at most 128 characters',
        event_time IS NULL, 'event_time: Field required',
        ev IS NULL, concat('event_time: Input should be a valid datetime (got ', event_time, ')'),
        ev < {{oldest:DateTime64(3, 'UTC')}},
            concat('event_time: ', toString(ev), ' is older than the {days}-day retention'),
        latency_ms IS NULL, 'latency_ms: Field required',
        lat IS NULL OR NOT isFinite(lat),
            concat('latency_ms: Input should be a finite number (got ', latency_ms, ')'),
        lat < 0, 'latency_ms: Input should be greater than or equal to 0',
        st NOT IN ('ok', 'error'),
            concat('status: Input should be ''ok'' or ''error'' (got ', st, ')'),
        length(ifNull(error, '')) > 4096, 'error: String should have at most 4096 characters',
        {{check_models:UInt8}} AND mdl NOT IN {{models:Array(String)}},
            concat('model: unknown model ''', mdl, ''' (configured models: ',
                   arrayStringConcat({{models:Array(String)}}, ', '), ')'),
        NOT isValidJSON(feats), '{unreadable}',
        NOT startsWith(trimLeft(feats), '{{'), 'features: Input should be a valid dictionary',
        bad_feature.1 != '',
            concat('features.', bad_feature.1,
                   ': Input should be a finite number, a string or a boolean'),
        prediction IS NOT NULL AND score IS NOT NULL AND NOT isFinite(score),
            'prediction: Input should be a finite number',
        prediction IS NOT NULL AND (startsWith(prediction, '[') OR startsWith(prediction, '{{')),
            'prediction: Input should be a valid number or a valid string',
        '') AS reason
SELECT __wl_seq, reason, rid, mdl, ver, ev, lat, st, ifNull(error, '') AS err, numbers, flags,
       strings, score, prediction AS raw_prediction
FROM {intake}
)
"""


@dataclass
class IntakeResult:
    """What the store made of a batch."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index, reason)
    unparsed: list[int] = field(default_factory=list)  # indices ClickHouse could not read


class SqlLogIntake:
    """Runs the validation and insert of inference logs in the store (see module docs)."""

    def __init__(self, store: Store, *, known_models: Collection[str] | None = None) -> None:
        self._store = store
        self._models = sorted(known_models) if known_models else []
        self._lock = threading.Lock()
        # The process id in the names lets an embedded store's single owner drop scratch tables
        # a killed predecessor left behind (Memory tables keep their definition on disk).
        token = f"{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._intake = f"_intake_logs_{token}"
        self._parsed = f"_parsed_logs_{token}"
        self._created = False
        self._parse_sql = _PARSE.format(intake=self._intake, days=LOG_RETENTION.days,
                                        event_time=_EVENT_TIME, unreadable=_UNREADABLE)

    def write(self, payloads: Sequence[bytes], ingest_ms: int, source: str) -> IntakeResult:
        """Validate and store JSON objects (bytes, each starting with ``{``)."""
        body = b"\n".join(_numbered(i, p) for i, p in enumerate(payloads))
        with self._lock:
            self._ensure_tables()
            try:
                return self._write(body, len(payloads), ingest_ms, source)
            finally:
                self._store.command(f"TRUNCATE TABLE {self._intake}")
                self._store.command(f"TRUNCATE TABLE {self._parsed}")

    def _write(self, body: bytes, count: int, ingest_ms: int, source: str) -> IntakeResult:
        store = self._store
        store.raw_insert(self._intake, body, "JSONEachRow", _JSON_AS_TEXT)
        # A redelivered record has the same event time: only the batch's range is searched.
        # One pass finds the range; two scalar subqueries would parse the times twice.
        low, high = store.query(f"SELECT min(ev), max(ev) FROM (SELECT {_EVENT_TIME} AS ev "
                                f"FROM {self._intake})")[0]
        store.command(
            f"INSERT INTO {self._parsed} "
            "SELECT *, reason = '' "
            "AND row_number() OVER (PARTITION BY request_id ORDER BY __wl_seq) = 1 "
            "AND request_id NOT IN (SELECT request_id FROM inference_logs WHERE event_time "
            "BETWEEN {low:DateTime64(3, 'UTC')} AND {high:DateTime64(3, 'UTC')}) AS keep "
            f"FROM ({self._parse_sql})",
            {"oldest": _moment(ingest_ms) - LOG_RETENTION, "ingest": _moment(ingest_ms),
             "source": source, "models": self._models or [""],
             "check_models": int(bool(self._models)),
             "low": low or _EPOCH, "high": high or _EPOCH},
        )
        store.command(
            f"INSERT INTO inference_logs ({', '.join(LOG_COLUMNS)}) "
            f"SELECT {', '.join(LOG_COLUMNS)} FROM {self._parsed} WHERE keep"
        )
        result = IntakeResult()
        seen, refused = store.query(
            f"SELECT count(), arraySort(groupArrayIf((__wl_seq, reason), NOT keep)) "
            f"FROM {self._parsed}")[0]
        for seq, reason in refused:
            if reason == _UNREADABLE:
                result.unparsed.append(seq)
            elif reason:
                result.rejected.append((seq, reason))
            else:
                result.duplicates += 1
        result.accepted = seen - len(result.rejected) - len(result.unparsed) - result.duplicates
        if seen < count:
            present = set(store.scalar(f"SELECT groupArray(__wl_seq) FROM {self._parsed}"))
            result.unparsed += [i for i in range(count) if i not in present]
        return result

    def _ensure_tables(self) -> None:
        if self._created:
            return
        if self._store.location.backend == "chdb":
            self._drop_stale_tables()
        columns = ", ".join(f"{name} Nullable(String)" for name in _INTAKE_COLUMNS)
        self._store.command(
            f"CREATE TABLE IF NOT EXISTS {self._intake} (__wl_seq UInt32, {columns}) "
            "ENGINE = Memory")
        self._store.command(
            f"CREATE TABLE IF NOT EXISTS {self._parsed} ENGINE = Memory AS "
            f"SELECT *, true AS keep FROM ({self._parse_sql}) WHERE false",
            {"oldest": _EPOCH, "ingest": _EPOCH, "source": "", "models": [""],
             "check_models": 0},
        )
        self._created = True

    def _drop_stale_tables(self) -> None:
        """Drop scratch tables of processes that no longer own this embedded store."""
        mine = f"_{os.getpid()}_"
        for (name,) in self._store.query(
            "SELECT name FROM system.tables WHERE database = {db:String} "
            "AND match(name, '^_(intake|parsed)_logs_[0-9]+_[0-9a-f]+$')",
            {"db": self._store.database},
        ):
            if mine not in name:
                self._store.command(f"DROP TABLE IF EXISTS `{name}`")

    def close(self) -> None:
        """Drop the scratch tables."""
        with self._lock:
            if self._created and not self._store.closed:
                self._store.command(f"DROP TABLE IF EXISTS {self._intake}")
                self._store.command(f"DROP TABLE IF EXISTS {self._parsed}")
            self._created = False


def _moment(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _numbered(index: int, payload: bytes) -> bytes:
    """Prefix a JSON object with its index in the batch: ``{"__wl_seq":7,...}``."""
    if _EMPTY_OBJECT.match(payload):
        return b'{"__wl_seq":%d}' % index
    return b'{"__wl_seq":%d,' % index + payload[1:]
