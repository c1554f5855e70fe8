"""Validate and store a batch of inference logs inside ClickHouse.

Python touches each raw record only to number it: the batch goes to a scratch table as
RowBinary (a sequence number and the record's bytes, length-prefixed, so no byte of one
record can spill into another). One INSERT ... SELECT decodes each record's fields with
ClickHouse's JSON functions, a second applies every rule of ``records.py`` and collects all
of a record's problems; request ids already stored or repeated in the batch are flagged, and
the accepted rows are copied into ``inference_logs``. A record ClickHouse cannot decode at all
(not UTF-8, not JSON, not an object) comes back as unparsed, for the pydantic model to explain.

The rules mirror ``records.InferenceLogRecord``; ``tests/test_ingest_contract.py`` holds the
two to the same answers with Hypothesis.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import threading
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from .clock import from_epoch_ms
from .records import (
    EPOCH_LIMITS,
    ISO_TIME,
    LOG_RETENTION,
    MAX_ERROR,
    MAX_FUTURE_SKEW,
    MAX_IDENTIFIER,
    MAX_VERSION,
    MAX_WHOLE_VERSION,
    WHITESPACE,
)
from .store import Store

LOG_COLUMNS = (
    "request_id", "model", "model_version", "event_time", "ingest_time", "latency_ms", "status",
    "error", "numeric_features", "categorical_features", "prediction", "prediction_label", "source",
)
# The reason given to a record ClickHouse cannot decode: it is handed back as unparsed.
_UNREADABLE = "unreadable"
# rapidjson, unlike simdjson, reads integers beyond 64 bits as doubles rather than as text,
# and refuses numbers beyond a double's range, as the pydantic path does.
_SETTINGS = "SETTINGS allow_simdjson = 0"
# Rows per scratch-table block: each insert into a Memory table is one block, and blocks are
# decoded in parallel (one thread each).
_BLOCK_ROWS = 2_500
# Scratch tables are named after their host and process (see SqlLogIntake.__init__).
_HOST = re.sub(r"[^a-z0-9]", "", socket.gethostname().lower())[:32] or "host"
_WS = "".join({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f", "\v": "\\v"}.get(c, c)
              for c in WHITESPACE)


def _kind(raw: str) -> str:
    """The JSON type of a raw value, worded as in ``records.json_type``."""
    return (f"multiIf(startsWith({raw}, '\"'), 'a string', startsWith({raw}, '{{'), 'an object', "
            f"startsWith({raw}, '['), 'an array', {raw} IN ('true', 'false'), 'a boolean', "
            "'a number')")


def _text_checks(name: str, text: str, limit: int | None) -> list[tuple[str, str]]:
    checks = [(f"position({text}, '\\0') > 0", f"'{name}: must not contain NUL characters'")]
    if limit is not None:
        checks.append((f"lengthUTF8({text}) > {limit}",
                       f"'{name}: must have at most {limit} characters'"))
    return checks


def _identifier(name: str, limit: int) -> str:
    """The first problem of an identifier field (``records._identifier``), or ''."""
    raw, text = f"r_{name}", f"s_{name}"
    return _first(
        (f"{raw} IS NULL", f"'{name}: Field required'"),
        (f"NOT startsWith({raw}, '\"')",
         f"concat('{name}: expected a string, got ', k_{name})"),
        (f"{text} = ''", f"'{name}: must not be empty'"),
        *_text_checks(name, text, limit),
    )


def _first(*checks: tuple[str, str]) -> str:
    arms = ", ".join(f"{condition}, {message}" for condition, message in checks)
    return f"multiIf({arms}, '')"


def _epoch_ms(number: str) -> str:
    """Milliseconds of a Unix time number (``records.unix_number_ms``); 0 for negative ones,
    which are refused with their own message (a huge one would overflow Int64)."""
    arms = ", ".join(f"{number} < {limit:g}, {number} * {mul:g} / {div:g}"
                     for limit, mul, div in EPOCH_LIMITS)
    return f"toInt64(multiIf({number} < 0, 0, {arms}, 0))"


_DECODE = f"""
SELECT
    seq,
    isValidUTF8(line) AND isValidJSON(line) AND startsWith(trimLeft(line), '{{') AS readable,
    JSONExtractKeysAndValuesRaw(if(readable, line, '{{}}')) AS kv,
    kv.1 AS keys,
    kv.2 AS values,
    length(arrayDistinct(keys)) != length(keys) AS duplicated,
    arrayFirst((k, i) -> indexOf(keys, k) < i, keys, arrayEnumerate(keys)) AS dup,
    nullIf(nullIf(values[indexOf(keys, 'request_id')], ''), 'null') AS r_request_id,
    nullIf(nullIf(values[indexOf(keys, 'model')], ''), 'null') AS r_model,
    nullIf(nullIf(values[indexOf(keys, 'version')], ''), 'null') AS r_version,
    nullIf(nullIf(values[indexOf(keys, 'event_time')], ''), 'null') AS r_event_time,
    nullIf(nullIf(values[indexOf(keys, 'latency_ms')], ''), 'null') AS r_latency_ms,
    nullIf(nullIf(values[indexOf(keys, 'status')], ''), 'null') AS r_status,
    nullIf(nullIf(values[indexOf(keys, 'error')], ''), 'null') AS r_error,
    nullIf(nullIf(values[indexOf(keys, 'features')], ''), 'null') AS r_features,
    nullIf(nullIf(values[indexOf(keys, 'prediction')], ''), 'null') AS r_prediction,
    -- the JSON type of each field, for messages
    {_kind("ifNull(r_request_id, '')")} AS k_request_id,
    {_kind("ifNull(r_model, '')")} AS k_model,
    {_kind("ifNull(r_version, '')")} AS k_version,
    {_kind("ifNull(r_event_time, '')")} AS k_event_time,
    {_kind("ifNull(r_latency_ms, '')")} AS k_latency_ms,
    {_kind("ifNull(r_error, '')")} AS k_error,
    {_kind("ifNull(r_features, '')")} AS k_features,
    {_kind("ifNull(r_prediction, '')")} AS k_prediction,
    trim(BOTH '{_WS}' FROM JSONExtractString(ifNull(r_request_id, ''))) AS s_request_id,
    trim(BOTH '{_WS}' FROM JSONExtractString(ifNull(r_model, ''))) AS s_model,
    if(startsWith(ifNull(r_version, ''), '"'),
       trim(BOTH '{_WS}' FROM JSONExtractString(r_version)), '') AS version_text,
    toFloat64OrNull(ifNull(r_version, '')) AS version_number,
    if(version_number IS NULL, version_text, toString(toInt64(version_number))) AS s_version,
    JSONExtractString(ifNull(r_event_time, '')) AS time_text,
    toFloat64OrNull(ifNull(r_event_time, '')) AS time_number,
    multiIf(time_number IS NOT NULL,
                fromUnixTimestamp64Milli({_epoch_ms("time_number")}, 'UTC'),
            match(time_text, {{iso:String}}),
                parseDateTime64BestEffortOrNull(time_text, 3, 'UTC'),
            NULL) AS ev,
    startsWith(ifNull(r_features, '{{'), '{{') AS features_object,
    if(features_object, JSONExtractKeysAndValuesRaw(ifNull(r_features, '{{}}')), [])
        AS fkv,
    fkv.1 AS fkeys,
    arrayFirst((k, i) -> indexOf(fkeys, k) < i, fkeys, arrayEnumerate(fkeys)) AS fdup,
    length(arrayDistinct(fkeys)) != length(fkeys) AS fduplicated,
    arrayFilter(x -> x.2 != 'null' AND NOT startsWith(x.2, '"')
                     AND NOT startsWith(x.2, '{{') AND NOT startsWith(x.2, '['), fkv) AS numbers,
    arrayFilter(x -> startsWith(x.2, '"'), fkv) AS strings
FROM {{{{intake}}}}
"""

# The checks and the typed columns, over the decoded fields (two statements: the analyzer
# resolves a small tree per statement; one statement inlining every alias cost ~50 ms of
# analysis per batch, whatever its size).
_PARSE = f"""
SELECT
    seq,
    if(NOT readable, '{_UNREADABLE}', arrayStringConcat(arrayFilter(p -> p != '', [
        p_record, p_request_id, p_model, p_version, p_event_time, p_latency, p_status, p_error,
        p_features, p_prediction]), '; ')) AS reason,
    s_request_id AS request_id,
    s_model AS model,
    s_version AS model_version,
    ifNull(ev, toDateTime64(0, 3, 'UTC')) AS event_time,
    {{ingest:DateTime64(3, 'UTC')}} AS ingest_time,
    ifNull(toFloat64OrNull(r_latency_ms), 0) AS latency_ms,
    ifNull(JSONExtractString(r_status), 'ok') AS status,
    ifNull(JSONExtractString(r_error), '') AS error,
    mapFromArrays(numbers.1,
                  arrayMap(x -> multiIf(x.2 = 'true', 1., x.2 = 'false', 0.,
                                        toFloat64OrZero(x.2)), numbers)) AS numeric_features,
    mapFromArrays(strings.1,
                  arrayMap(x -> JSONExtractString(x.2), strings)) AS categorical_features,
    multiIf(r_prediction IS NULL OR startsWith(r_prediction, '"'), NULL,
            r_prediction = 'true', 1., r_prediction = 'false', 0.,
            toFloat64OrNull(r_prediction)) AS prediction,
    if(startsWith(ifNull(r_prediction, ''), '"'), JSONExtractString(r_prediction), '')
        AS prediction_label,
    {{source:String}} AS source
FROM (
SELECT
    *,
    if(duplicated, concat('record: duplicate key ''', dup, ''''), '') AS p_record,
    -- a field's raw JSON, NULL when absent or null (null is the same as absent),
    if(duplicated, '', {_identifier("request_id", MAX_IDENTIFIER)}) AS p_request_id,
    if(duplicated, '', multiIf(
        ({_identifier("model", MAX_IDENTIFIER)} AS model_problem) != '', model_problem,
        {{check_models:UInt8}} AND s_model NOT IN {{models:Array(String)}},
            concat('model: unknown model ''', s_model, ''' (configured models: ',
                   arrayStringConcat({{models:Array(String)}}, ', '), ')'),
        '')) AS p_model,
    if(duplicated, '', multiIf(
        r_version IS NULL, 'version: Field required',
        version_number IS NOT NULL, if(version_number != floor(version_number)
            OR abs(version_number) >= {MAX_WHOLE_VERSION:g},
            'version: a number must be a whole number below 1e15', ''),
        NOT startsWith(r_version, '"'),
            concat('version: expected a string or a whole number, got ', k_version),
        version_text = '', 'version: must not be empty',
        position(version_text, '\\0') > 0, 'version: must not contain NUL characters',
        lengthUTF8(version_text) > {MAX_VERSION},
            'version: must have at most {MAX_VERSION} characters',
        '')) AS p_version,
    -- event time: ISO 8601 text, or a Unix time number told apart by magnitude,
    if(duplicated, '', multiIf(
        r_event_time IS NULL, 'event_time: Field required',
        time_number IS NOT NULL AND time_number < 0,
            'event_time: a Unix time number must not be negative',
        time_number IS NOT NULL AND time_number >= 1e20,
            'event_time: a Unix time number must be below 1e20 (nanoseconds)',
        time_number IS NULL AND NOT startsWith(r_event_time, '"'),
            concat('event_time: expected ISO 8601 text or a Unix time number, got ',
                   k_event_time),
        time_number IS NULL AND NOT match(time_text, {{iso:String}}),
            concat('event_time: expected ISO 8601 text such as 2026-11-25T10:00:00Z, ',
                   'or a Unix time number'),
        ev IS NULL, 'event_time: not a valid date or time',
        ev < {{oldest:DateTime64(3, 'UTC')}},
            concat('event_time: ', toString(ev), ' is older than the ', {{days:String}},
                   '-day retention'),
        ev > {{newest:DateTime64(3, 'UTC')}},
            concat('event_time: ', toString(ev), ' is more than ', {{skew:String}},
                   ' s ahead of the ingest time (ingest.max_future_skew)'),
        '')) AS p_event_time,
    if(duplicated, '', multiIf(
        r_latency_ms IS NULL, 'latency_ms: Field required',
        k_latency_ms != 'a number',
            concat('latency_ms: expected a number, got ', k_latency_ms),
        toFloat64OrZero(r_latency_ms) < 0, 'latency_ms: must be greater than or equal to 0',
        '')) AS p_latency,
    if(duplicated OR r_status IS NULL OR r_status IN ('"ok"', '"error"'), '',
       'status: expected ''ok'' or ''error''') AS p_status,
    if(duplicated OR r_error IS NULL, '', multiIf(
        NOT startsWith(r_error, '"'),
            concat('error: expected a string, got ', k_error),
        position(JSONExtractString(r_error), '\\0') > 0,
            'error: must not contain NUL characters',
        lengthUTF8(JSONExtractString(r_error)) > {MAX_ERROR},
            'error: must have at most {MAX_ERROR} characters',
        '')) AS p_error,
    -- features: an object of numbers, booleans, strings and nulls,
    if(duplicated OR r_features IS NULL, '', multiIf(
        NOT features_object,
            concat('features: expected an object, got ', k_features),
        fduplicated, concat('features: duplicate key ''', fdup, ''''),
        has(fkeys, ''), 'features: keys must not be empty',
        arrayExists(k -> lengthUTF8(k) > {MAX_IDENTIFIER}, fkeys),
            'features: keys must have at most {MAX_IDENTIFIER} characters',
        arrayExists(k -> position(k, '\\0') > 0, fkeys),
            'features: keys must not contain NUL characters',
        arrayStringConcat(arrayFilter(p -> p != '', arrayMap(x -> multiIf(
            startsWith(x.2, '{{') OR startsWith(x.2, '['),
                concat('features.', x.1, ': expected a number, a string or a boolean, got ',
                       {_kind("x.2")}),
            startsWith(x.2, '"') AND position(JSONExtractString(x.2), '\\0') > 0,
                concat('features.', x.1, ': must not contain NUL characters'),
            ''), fkv)), '; '))) AS p_features,
    if(duplicated OR r_prediction IS NULL, '', multiIf(
        startsWith(r_prediction, '{{') OR startsWith(r_prediction, '['),
            concat('prediction: expected a number, a string or a boolean, got ',
                   k_prediction),
        startsWith(r_prediction, '"') AND position(JSONExtractString(r_prediction), '\\0') > 0,
            'prediction: must not contain NUL characters',
        '')) AS p_prediction
FROM {{{{decoded}}}}
)
"""


@dataclass
class IntakeResult:
    """What the store made of a batch, by position in it."""

    accepted: int = 0
    duplicates: list[int] = field(default_factory=list)  # already stored, or repeated
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index, reason)
    unparsed: list[int] = field(default_factory=list)  # indices ClickHouse could not decode
    accepted_models: dict[str, int] = field(default_factory=dict)  # stored, per model
    duplicate_models: dict[str, int] = field(default_factory=dict)


class SqlLogIntake:
    """Runs the validation and insert of inference logs in the store (see module docs)."""

    def __init__(self, store: Store, *, known_models: Collection[str] | None = None,
                 max_future_skew: timedelta = MAX_FUTURE_SKEW) -> None:
        self._store = store
        self._models = sorted(known_models) if known_models else []
        self._skew = max_future_skew
        self._lock = threading.Lock()
        # Host and process id in the names let a writer drop the scratch tables a killed
        # process left behind (Memory tables keep their definition on disk): on an embedded
        # store every other process's, on a server those of dead processes of this host.
        token = f"{_HOST}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._intake = f"_intake_logs_{token}"
        self._decoded = f"_decoded_logs_{token}"
        self._parsed = f"_parsed_logs_{token}"
        self._created = False
        self._decode_sql = _DECODE.replace("{{intake}}", self._intake)
        self._parse_sql = _PARSE.replace("{{decoded}}", self._decoded)

    def write(self, payloads: Sequence[bytes], ingest_ms: int, source: str) -> IntakeResult:
        """Validate and store JSON objects (bytes, one record each)."""
        blocks = [b"".join(_row_binary(i, payloads[i])
                           for i in range(start, min(start + _BLOCK_ROWS, len(payloads))))
                  for start in range(0, len(payloads), _BLOCK_ROWS)]
        with self._lock:
            self._ensure_tables()
            try:
                return self._write(blocks, ingest_ms, source)
            finally:
                for table in (self._intake, self._decoded, self._parsed):
                    self._store.command(f"TRUNCATE TABLE {table}")

    def _parameters(self, ingest_ms: int, source: str) -> dict:
        ingest = from_epoch_ms(ingest_ms)
        return {"oldest": ingest - LOG_RETENTION, "newest": ingest + self._skew,
                "ingest": ingest, "source": source, "models": self._models or [""],
                "check_models": int(bool(self._models)), "iso": ISO_TIME,
                "days": str(LOG_RETENTION.days), "skew": f"{self._skew.total_seconds():g}"}

    def _write(self, blocks: list[bytes], ingest_ms: int, source: str) -> IntakeResult:
        store = self._store
        for block in blocks:
            store.raw_insert(self._intake, block, "RowBinary")
        parameters = self._parameters(ingest_ms, source)
        store.command(f"INSERT INTO {self._decoded} {self._decode_sql} {_SETTINGS}",
                      parameters)
        store.command(
            f"INSERT INTO {self._parsed} SELECT *, reason = '' AND "
            "row_number() OVER (PARTITION BY request_id ORDER BY seq) = 1 AS first "
            f"FROM ({self._parse_sql})",
            parameters,
        )
        # A redelivered record has the same event time: only the batch's range is searched,
        # and only for the batch's ids (the bloom filter on request_id skips the rest).
        duplicates = store.scalar(
            f"WITH (SELECT min(event_time) FROM {self._parsed} WHERE first) AS low, "
            f"(SELECT max(event_time) FROM {self._parsed} WHERE first) AS high "
            f"SELECT groupArray(seq) FROM {self._parsed} WHERE reason = '' AND (NOT first OR "
            "request_id IN (SELECT request_id FROM inference_logs "
            "WHERE event_time BETWEEN low AND high "
            f"AND request_id IN (SELECT request_id FROM {self._parsed} WHERE first)))")
        store.command(
            f"INSERT INTO inference_logs ({', '.join(LOG_COLUMNS)}) "
            f"SELECT {', '.join(LOG_COLUMNS)} FROM {self._parsed} "
            "WHERE first AND seq NOT IN {duplicates:Array(UInt32)} "
            "SETTINGS max_partitions_per_insert_block = 1000",
            {"duplicates": duplicates},
        )
        # Every row reaches the parsed table (RowBinary cannot skip one): what is neither
        # refused nor a duplicate was stored.
        seen, refused, stored, repeated = store.query(
            "SELECT count(), arraySort(groupArrayIf((seq, reason), reason != '')), "
            "sumMapIf(map(model, toUInt64(1)), reason = '' AND NOT has({d:Array(UInt32)}, seq)),"
            " sumMapIf(map(model, toUInt64(1)), has({d:Array(UInt32)}, seq)) "
            f"FROM {self._parsed}", {"d": duplicates})[0]
        result = IntakeResult(duplicates=sorted(duplicates), accepted_models=dict(stored),
                              duplicate_models=dict(repeated))
        for seq, reason in refused:
            if reason == _UNREADABLE:
                result.unparsed.append(seq)
            else:
                result.rejected.append((seq, reason))
        result.accepted = seen - len(refused) - len(duplicates)
        return result

    def _ensure_tables(self) -> None:
        if self._created:
            return
        self._drop_stale_tables()
        self._store.command(
            f"CREATE TABLE IF NOT EXISTS {self._intake} (seq UInt32, line String) "
            "ENGINE = Memory")
        self._store.command(
            f"CREATE TABLE IF NOT EXISTS {self._decoded} ENGINE = Memory AS "
            f"SELECT * FROM ({self._decode_sql}) WHERE false", self._parameters(0, ""))
        self._store.command(
            f"CREATE TABLE IF NOT EXISTS {self._parsed} ENGINE = Memory AS "
            f"SELECT *, true AS first FROM ({self._parse_sql}) WHERE false",
            self._parameters(0, ""),
        )
        self._created = True

    def _drop_stale_tables(self) -> None:
        """Drop scratch tables of processes that are gone (see ``__init__``)."""
        embedded = self._store.location.backend == "chdb"
        for (name,) in self._store.query(
            "SELECT name FROM system.tables WHERE database = {db:String} "
            "AND match(name, '^_(intake|decoded|parsed)_logs_[a-z0-9]+_[0-9]+_[0-9a-f]+$')",
            {"db": self._store.database},
        ):
            host, pid = name.split("_")[3:5]
            if int(pid) == os.getpid() and host == _HOST:
                continue
            if embedded or (host == _HOST and not _alive(int(pid))):
                self._store.command(f"DROP TABLE IF EXISTS `{name}`")

    def close(self) -> None:
        """Drop the scratch tables."""
        with self._lock:
            if self._created and not self._store.closed:
                for table in (self._intake, self._decoded, self._parsed):
                    self._store.command(f"DROP TABLE IF EXISTS {table}")
            self._created = False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _row_binary(index: int, payload: bytes) -> bytes:
    """One (seq UInt32, line String) row in RowBinary: the string is length-prefixed."""
    size = len(payload)
    prefix = bytearray()
    while size >= 0x80:
        prefix.append(size & 0x7F | 0x80)
        size >>= 7
    prefix.append(size)
    return struct.pack("<I", index) + bytes(prefix) + payload

