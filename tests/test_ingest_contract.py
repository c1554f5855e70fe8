"""The ingest contract: the SQL intake and the pydantic model agree on every record.

Inference logs are validated in ClickHouse (``telemetry/intake.py``) for speed; labels, and
the explanation of records the store cannot decode, in pydantic (``telemetry/records.py``).
Hypothesis generates batches that mix valid and invalid values for every field, and whole
records that are broken (truncated, not UTF-8, not an object, keys given twice). For each
record both paths must accept or reject it alike and, when they reject it, name the same
fields; every record the model accepts must be stored, whatever its neighbours.
"""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry import InferenceLogRecord, Migrator, TelemetryWriter, open_store

NOW = datetime.now(UTC).replace(microsecond=123000)
NOW_MS = int(NOW.timestamp() * 1000)
_ids = itertools.count()


def _raw(value: object) -> str:
    return json.dumps(value)


def _iso(moment: datetime, style: int) -> str:
    styles = ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M",
              "%Y-%m-%dT%H:%M:%S+00:00", "%Y-%m-%dT%H:%M:%S.%f")
    return moment.strftime(styles[style])


VALID_OFFSETS = [timedelta(0), timedelta(hours=-1), timedelta(days=-89), timedelta(minutes=4)]
INVALID_OFFSETS = [timedelta(days=-91), timedelta(minutes=6), timedelta(days=3650)]

texts = {
    "model": st.sampled_from([_raw("fraud"), _raw(" fraud\n"), _raw("é" * 200)]),
    "bad_model": st.sampled_from([_raw(""), _raw("  \t"), "5", "true", "{}", "[]",
                                  _raw("m" * 257), _raw("é" * 257), _raw("a\u0000b")]),
}


@st.composite
def event_times(draw) -> str:
    if draw(st.booleans()):
        moment = NOW + draw(st.sampled_from(VALID_OFFSETS))
    else:
        moment = NOW + draw(st.sampled_from(INVALID_OFFSETS))
    form = draw(st.sampled_from(["iso", "s", "ms", "us", "ns", "odd"]))
    if form == "iso":
        return _raw(_iso(moment, draw(st.integers(0, 4))))
    seconds = moment.timestamp()
    if form == "s":
        return repr(round(seconds, 3))
    if form == "ms":
        return str(int(seconds * 1000))
    if form == "us":
        return str(int(seconds * 1_000_000))
    if form == "ns":
        return str(int(seconds * 1_000_000_000))
    return draw(st.sampled_from([
        "-5", "1e20", "true", _raw(str(int(seconds))), _raw("2026-02-30"),
        _raw("25/11/2026"), _raw("2026-11-25T24:00:00"), _raw(""), "[]", "{}",
        _raw("2026-11-25T10:00:00+05:30")]))


def _field(valid: st.SearchStrategy[str], invalid: st.SearchStrategy[str],
           optional: bool = False) -> st.SearchStrategy[str | None]:
    """Raw JSON for a field, or None for leaving it out."""
    choices = [valid, valid, invalid, st.just("null")]
    if optional:
        choices.append(st.none())
    else:
        choices.append(st.sampled_from([None]))
    return st.one_of(*choices)


FEATURES_OK = [_raw({}), _raw({"a": 1, "b": "x", "c": True, "d": None}),
               _raw({"amount": 1e308, "country": "é" * 300}), _raw({" k ": -0.5})]
FEATURES_BAD = ['"str"', "[1]", "5", _raw({"": 1}), _raw({"k": {}}), _raw({"k": [1]}),
                '{"a": 1, "a": 2}', _raw({"k" * 257: 1}), _raw({"k": "a\u0000"}),
                _raw({"a\u0000": 1}), _raw({"a": 1, "b": {"c": 2}, "d": [3]})]


@st.composite
def records(draw) -> bytes:
    index = f"{next(_ids):09d}"  # fixed width: the same draws give the same lengths
    rid = draw(st.one_of(
        st.sampled_from([_raw(f"r-{index}"), _raw(f" r-{index}\n"), _raw(f"\tr-{index} ")]),
        st.sampled_from(["5", "{}", "[]", _raw(""), _raw(" "), _raw("r" * 257),
                         _raw(f"r-{index}\u0000"), "null", None])))
    fields = {
        "request_id": rid,
        "model": draw(_field(texts["model"], texts["bad_model"])),
        "version": draw(_field(
            st.sampled_from([_raw("2"), "2", "2.0", "-3", _raw(" v7 "), _raw("é" * 128)]),
            st.sampled_from(["2.5", "true", _raw(""), _raw("v" * 129), "1e15", "{}"]))),
        "event_time": draw(_field(event_times(), st.sampled_from(["[1]"]))),
        "latency_ms": draw(_field(st.sampled_from(["0", "3.5", "1e308", "12"]),
                                  st.sampled_from(["-1", _raw("3"), "true", "[]", "{}"]))),
        "status": draw(_field(st.sampled_from([_raw("ok"), _raw("error")]),
                              st.sampled_from([_raw("OK"), _raw("maybe"), "1"]), True)),
        "error": draw(_field(st.sampled_from([_raw("boom"), _raw("")]),
                             st.sampled_from(["5", _raw("e" * 4097), _raw("a\u0000")]), True)),
        "features": draw(_field(st.sampled_from(FEATURES_OK), st.sampled_from(FEATURES_BAD),
                                True)),
        "prediction": draw(_field(st.sampled_from(["0.3", _raw("cat"), "true", "7"]),
                                  st.sampled_from(["{}", "[1]", _raw("a\u0000")]), True)),
        "extra": draw(st.sampled_from([None, _raw({"nested": [1, {"x": None}]}), "1e300"])),
    }
    pairs = [f'"{k}": {v}' for k, v in fields.items() if v is not None]
    if draw(st.integers(0, 9)) == 0 and pairs:
        pairs.append(draw(st.sampled_from(pairs)))  # a key given twice
    text = "{" + ", ".join(draw(st.permutations(pairs))) + "}"
    body = text.encode()
    damage = draw(st.integers(0, 14))
    if damage == 0:
        body = body[: draw(st.integers(0, len(body) - 1))]  # truncated
    elif damage == 1:
        body = body.replace(b'"r-', b'"\xff\xfer-', 1)  # not UTF-8
    elif damage == 2:
        body = b"[" + body + b"]"
    elif damage == 3:
        body = body[:-1] + b', "big": ' + b"9" * 400 + b"}"
    return body


def _fields(reason: str) -> set[str]:
    return {problem.split(": ", 1)[0] for problem in reason.split("; ")}


@pytest.fixture(scope="module")
def writer():
    store = open_store(f"chdb://memory?database=contract_{uuid.uuid4().hex[:10]}")
    Migrator(store).migrate()
    writer = TelemetryWriter(store, clock=lambda: NOW)
    yield writer
    writer.close()
    store.command(f"DROP DATABASE IF EXISTS `{store.database}`")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(records(), min_size=1, max_size=25))
def test_the_store_and_the_model_accept_and_reject_the_same_records(writer, batch):
    expected: dict[int, str | None] = {}  # index -> the model's reason, None when valid
    for index, raw in enumerate(batch):
        try:
            writer._parse(InferenceLogRecord, raw, NOW_MS)
            expected[index] = None
        except ValueError as exc:
            expected[index] = str(exc)

    result = writer.write_logs(batch, "contract")

    refused = {r.index: r.reason for r in result.rejections}
    for index, raw in enumerate(batch):
        model_reason = expected[index]
        store_reason = refused.get(index)
        if model_reason is None:
            assert store_reason is None, (raw, store_reason)
        else:
            assert store_reason is not None, (raw, model_reason)
            assert _fields(store_reason) == _fields(model_reason), (
                raw, store_reason, model_reason)
    # Every valid record is stored, whatever its neighbours (ids are unique per record).
    assert result.accepted == sum(reason is None for reason in expected.values())
    assert result.duplicates == 0
