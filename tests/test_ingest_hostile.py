"""Ingest as a hostile client tries it: every bad input is answered, nothing good is lost.

Each test names a class of defect that was seen (issue 7) and fails without its fix.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator

import pytest
import requests
import zstandard
from prometheus_client import CollectorRegistry

from telemetry import StoreError, TelemetryWriter
from watchloop.api import create_app
from watchloop.metrics import ShellMetrics
from watchloop.shell import ApiServer


def _log(i: int | str, **overrides) -> dict:
    return {"request_id": f"r{i}", "model": "fraud", "version": "1",
            "event_time": time.time(), "latency_ms": 2.0, **overrides}


@pytest.fixture
def api(store) -> Iterator[str]:
    metrics = ShellMetrics(CollectorRegistry())
    server = ApiServer(create_app(store, TelemetryWriter(store), metrics,
                                  max_body_bytes=2_000_000), "127.0.0.1", 0)
    server.start()
    yield server.url
    server.stop()


def _post(api: str, body: bytes | str, kind: str = "logs", **headers: str):
    return requests.post(f"{api}/v1/{kind}", data=body, timeout=30,
                         headers={"Content-Type": "application/json", **headers})


def _stored_ids(store) -> set[str]:
    return {r for (r,) in store.query("SELECT request_id FROM inference_logs")}


# -- never a 500 -------------------------------------------------------------------------------

def test_deeply_nested_json_costs_only_its_own_record(api, store):
    deep = '{"request_id": "deep", "extra": ' + "[" * 5000 + "]" * 5000 + "}"
    body = "[" + json.dumps(_log(1)) + ", " + deep + ", " + json.dumps(_log(2)) + "]"
    response = _post(api, body)
    assert response.status_code == 200, response.text
    assert _stored_ids(store) >= {"r1", "r2"}


@pytest.mark.parametrize("per_second", [1e6, 1e9])  # microseconds, nanoseconds
def test_epoch_microseconds_and_nanoseconds_are_recognised(api, store, per_second):
    # Half a millisecond past a millisecond: a nanosecond count as a double is exact only to
    # 256 ns, which near a boundary would move the stored millisecond by one.
    sent = int(time.time() * 1000) / 1000 + 0.0005
    response = _post(api, json.dumps([_log(1, event_time=sent * per_second)]))
    assert response.status_code == 200 and response.json()["accepted"] == 1
    stored = store.scalar("SELECT toUnixTimestamp64Milli(event_time) FROM inference_logs")
    assert abs(stored - sent * 1000) < 1


@pytest.mark.parametrize("event_time, reason", [
    (1e20, "below 1e20"),
    (-1, "must not be negative"),
    (-3.27e307, "must not be negative"),  # found by the schemathesis fuzz: overflowed Int64
    ("2107-01-01T00:00:00Z", "ahead of the ingest time"),  # past DateTime's 2106 wrap
    (time.time() + 3600, "ahead of the ingest time"),
    ("2026-02-30T00:00:00Z", "not a valid date"),
])
def test_impossible_and_future_times_are_refused_with_the_reason(api, store, event_time,
                                                                  reason):
    response = _post(api, json.dumps([_log(1), _log(2, event_time=event_time)]))
    assert response.status_code == 200
    summary = response.json()
    assert (summary["accepted"], summary["rejected"]) == (1, 1)
    assert reason in summary["errors"][0]["reason"]
    # Nothing acknowledged and then silently gone: the rollup counts what the table holds.
    assert store.scalar("SELECT count() FROM inference_logs") == 1
    assert store.scalar("SELECT sum(requests) FROM inference_rollup_1m") == 1


def test_a_label_that_is_a_400_digit_integer_is_refused_not_a_500(api, store):
    now = time.time()
    body = ('[{"request_id": "a", "label": ' + "9" * 400 + f', "label_time": {now}}}, '
            f'{{"request_id": "b", "label": 1, "label_time": {now}}}]')
    response = _post(api, body, "labels")
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    assert "label: must be a finite number" in response.json()["errors"][0]["reason"]


def test_a_batch_across_many_days_is_stored_whole(api, store):
    day = 86_400
    records = [_log(i, event_time=time.time() - i * day) for i in range(90)]
    response = _post(api, json.dumps(records))
    assert response.status_code == 200 and response.json()["accepted"] == 90


# -- one bad record never costs a good one ---------------------------------------------------

@pytest.mark.parametrize("broken", [
    '{"request_id": "b2", "features": {"a": [1, 2',
    '{"request_id": "b2", "model": "fraud',
    '{"request_id": "b2", "model": "fraud"',
    '{"request_id": "b2"}{"request_id": "b3"}',
])
def test_a_truncated_line_costs_only_itself(api, store, broken):
    lines = [json.dumps(_log(i)) for i in range(3000)]
    lines.insert(1000, broken)
    response = _post(api, "\n".join(lines), **{"Content-Type": "application/x-ndjson"})
    summary = response.json()
    assert (summary["accepted"], summary["rejected"]) == (3000, 1)
    assert summary["errors"][0]["index"] == 1000  # the line at fault, not a neighbour
    assert store.scalar("SELECT count() FROM inference_logs") == 3000
    (payload,) = store.query("SELECT payload FROM dead_letters")[0]
    assert payload == broken


def test_a_truncated_element_of_an_array_costs_only_itself(api, store):
    body = "[" + ", ".join(json.dumps(_log(i)) for i in range(50)) + ', {"request_id": "x"'
    response = _post(api, body)
    assert response.json()["accepted"] == 50
    assert response.json()["rejected"] == 1


# -- one contract for logs and labels --------------------------------------------------------

def test_a_request_id_with_a_trailing_newline_joins_its_label(store):
    writer = TelemetryWriter(store)
    now = time.time()
    writer.write_logs([_log("-x\n")], "t")
    writer.write_labels([{"request_id": "\tr-x", "label": 1, "label_time": now}], "t")
    assert store.scalar(
        "SELECT count() FROM inference_logs JOIN labels USING request_id") == 1


def test_lengths_are_characters_not_bytes(store):
    result = TelemetryWriter(store).write_logs([_log(1, model="é" * 200)], "t")
    assert result.accepted == 1
    assert store.scalar("SELECT model FROM inference_logs") == "é" * 200


@pytest.mark.parametrize("request_id", [5, {"a": 1}, [1]])
def test_request_ids_must_be_strings_for_logs_and_labels_alike(store, request_id):
    writer = TelemetryWriter(store)
    log = writer.write_logs([_log(1) | {"request_id": request_id}], "t")
    label = writer.write_labels([{"request_id": request_id, "label": 1,
                                  "label_time": time.time()}], "t")
    assert log.rejected == label.rejected == 1
    assert "request_id: expected a string" in log.rejections[0].reason
    assert "request_id: expected a string" in label.rejections[0].reason


@pytest.mark.parametrize("record, reason", [
    (b'{"request_id": "a", "model": "fraud", "version": "1", "event_time": 1, '
     b'"latency_ms": 1, "features": {"": {}}}', "features: keys must not be empty"),
    (b'{"request_id": "a\\u0000", "model": "fraud"}', "must not contain NUL"),
    (b'{"request_id": "\xff\xfe", "model": "fraud"}', "not valid UTF-8"),
    (b'{"request_id": "a", "request_id": "b"}', "duplicate key 'request_id'"),
])
def test_what_the_store_cannot_hold_faithfully_is_refused(store, record, reason):
    result = TelemetryWriter(store).write_logs([record], "t")
    assert result.rejected == 1 and reason in result.rejections[0].reason


def test_big_integers_are_numeric_features(store):
    result = TelemetryWriter(store).write_logs(
        [json.dumps(_log(1, features={"n": 2**64}))], "t")
    assert result.accepted == 1
    numeric, categorical = store.query(
        "SELECT numeric_features, categorical_features FROM inference_logs")[0]
    assert numeric == {"n": float(2**64)} and categorical == {}


def test_every_problem_of_a_record_is_reported_in_json_terms(store):
    result = TelemetryWriter(store).write_logs(
        [{"request_id": None, "model": 5, "version": True, "event_time": [],
          "latency_ms": "fast", "status": "maybe"}], "t")
    reason = result.rejections[0].reason
    for field in ("request_id: Field required", "model: expected a string, got a number",
                  "version:", "event_time:", "latency_ms: expected a number, got a string",
                  "status:"):
        assert field in reason
    assert "NoneType" not in reason and "got bool" not in reason


# -- Content-Encoding -----------------------------------------------------------------------

@pytest.mark.parametrize("encoding, compress", [
    ("gzip", gzip.compress), ("zstd", zstandard.ZstdCompressor().compress)])
def test_compressed_bodies_are_decoded(api, store, encoding, compress):
    body = "\n".join(json.dumps(_log(i)) for i in range(200)).encode()
    response = _post(api, compress(body), **{"Content-Encoding": encoding,
                                             "Content-Type": "application/x-ndjson"})
    assert response.status_code == 200 and response.json()["accepted"] == 200


def test_a_compression_bomb_is_refused_with_413(api, store):
    response = _post(api, gzip.compress(b" " * 10_000_000), **{"Content-Encoding": "gzip"})
    assert response.status_code == 413


def test_an_unknown_encoding_is_415_and_nothing_is_stored(api, store):
    response = _post(api, b"xx", **{"Content-Encoding": "br"})
    assert response.status_code == 415 and "br" in response.json()["error"]
    assert store.scalar("SELECT count() FROM dead_letters") == 0


# -- a batch the store refuses -----------------------------------------------------------------

class _RefusesPoison:
    """The real store, refusing any intake batch holding the text "poison" (fault injection:
    no valid record makes chDB fail on purpose)."""

    def __init__(self, store) -> None:
        self._store = store

    def __getattr__(self, name):
        return getattr(self._store, name)

    def raw_insert(self, table, data, fmt, settings=None):
        if b"poison" in data:
            raise StoreError("Code: 1001. std::exception: poison")
        return self._store.raw_insert(table, data, fmt, settings)


def test_a_batch_the_store_refuses_is_bisected_to_the_record_at_fault(store):
    writer = TelemetryWriter(_RefusesPoison(store))
    records = [_log(i) for i in range(40)]
    records[17]["error"] = "poison"
    result = writer.write_logs(records, "t")
    assert (result.accepted, result.rejected) == (39, 1)
    assert result.rejections[0].index == 17 and "poison" in result.rejections[0].reason
    assert store.scalar("SELECT count() FROM inference_logs") == 39


def test_a_store_that_refuses_everything_raises_instead_of_dead_lettering(store):
    writer = TelemetryWriter(_RefusesPoison(store))
    with pytest.raises(StoreError):
        writer.write_logs([_log(i, error="poison") for i in range(4)], "t")
    assert store.scalar("SELECT count() FROM dead_letters") == 0


class _Outage:
    """The real store, with an outage that starts or ends part-way through a batch: intake
    writes numbered ``down_from`` up to ``down_until`` fail, and while a write is failing
    the store answers no ping only if ``silent`` (a transient refusal answers pings)."""

    def __init__(self, store, down_from: int = 0, down_until: int = 10**9,
                 silent: bool = True) -> None:
        self._store = store
        self.down_from, self.down_until, self.silent = down_from, down_until, silent
        self.writes = 0

    def __getattr__(self, name):
        return getattr(self._store, name)

    @property
    def down(self) -> bool:
        return self.down_from <= self.writes < self.down_until

    def raw_insert(self, table, data, fmt, settings=None):
        self.writes += 1
        if self.down_from <= self.writes - 1 < self.down_until:
            raise StoreError("Code: 241. DB::Exception: Memory limit exceeded")
        return self._store.raw_insert(table, data, fmt, settings)

    def ping(self) -> bool:
        return not (self.silent and self.down) and self._store.ping()


def test_an_outage_starting_mid_bisection_dead_letters_nothing_and_loses_nothing(store):
    records = [_log(i) for i in range(40)]
    records[30]["error"] = "poison"
    # write 1 (all 40) is refused for the poison, write 2 (the first 20) is stored, and then
    # the store goes away: the rest must not be blamed on their records
    outage = _Outage(_RefusesPoison(store), down_from=2)
    with pytest.raises(StoreError):
        TelemetryWriter(outage).write_logs(records, "t")
    assert store.scalar("SELECT count() FROM dead_letters") == 0
    outage.down_until = 0  # back: the caller retries the whole batch
    result = TelemetryWriter(outage).write_logs(records, "t")
    assert (result.accepted, result.duplicates, result.rejected) == (19, 20, 1)
    assert result.rejections[0].index == 30
    assert store.scalar("SELECT count() FROM inference_logs FINAL") == 39


def test_a_store_that_comes_back_mid_bisection_gets_every_record(store):
    # transient refusals while the store still answers pings: the batch, its halves down to
    # record 0 alone (6 writes) fail, then the store recovers; record 0's retry is stored
    outage = _Outage(store, down_until=6, silent=False)
    result = TelemetryWriter(outage).write_logs([_log(i) for i in range(40)], "t")
    assert (result.accepted, result.rejected) == (40, 0)
    assert store.scalar("SELECT count() FROM dead_letters") == 0
    assert store.scalar("SELECT count() FROM inference_logs FINAL") == 40


def test_a_store_down_at_once_is_not_bisected(store):
    outage = _Outage(store)
    with pytest.raises(StoreError, match="stopped answering"):
        TelemetryWriter(outage).write_logs([_log(i) for i in range(40)], "t")
    assert outage.writes == 1  # no 79 writes to a store that does not answer
    assert store.scalar("SELECT count() FROM dead_letters") == 0


# -- many small writers ----------------------------------------------------------------------

def test_concurrent_small_requests_are_written_together_each_answered_for_its_own(store):
    from concurrent.futures import ThreadPoolExecutor

    class CountingWriter(TelemetryWriter):
        """The real writer, counting the store batches it is asked to write."""

        batches = 0

        def write_logs(self, records, source):
            CountingWriter.batches += 1
            return super().write_logs(records, source)

    metrics = ShellMetrics(CollectorRegistry())
    server = ApiServer(create_app(store, CountingWriter(store), metrics), "127.0.0.1", 0)
    server.start()

    def post(i: int) -> dict:
        records = [_log(f"c{i}")]
        if i % 4 == 0:
            records.append({"request_id": f"bad{i}"})  # its own error, at its own index
        if i % 4 == 1:
            records.append(_log(f"c{i}"))  # a duplicate within its own request
        return requests.post(f"{server.url}/v1/logs", json=records, timeout=60).json()

    try:
        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(post, range(256)))
    finally:
        server.stop()
    for i, answer in enumerate(answers):
        assert answer["accepted"] == 1
        assert answer["rejected"] == (1 if i % 4 == 0 else 0)
        assert answer["duplicates"] == (1 if i % 4 == 1 else 0)
        if i % 4 == 0:
            assert answer["errors"][0]["index"] == 1
    assert store.scalar("SELECT count() FROM inference_logs") == 256
    assert CountingWriter.batches < 256 / 4  # coalesced: far fewer batches than requests


@pytest.mark.parametrize("field", ["version", "latency_ms", "event_time", "prediction"])
def test_a_huge_integer_in_any_numeric_field_is_refused_not_a_500(api, store, field):
    second = {k: v for k, v in _log(2).items() if k != field}
    body = "[" + json.dumps(_log(1)) + ", " + json.dumps(second)[:-1] + \
        f', "{field}": {"9" * 400}}}]'
    response = _post(api, body)
    assert response.status_code == 200, response.text
    assert (response.json()["accepted"], response.json()["rejected"]) == (1, 1)
    assert field in response.json()["errors"][0]["reason"]


def test_a_corrupt_gzip_body_is_400_with_the_reason(api, store):
    response = _post(api, b"\x1f\x8b not really gzip", **{"Content-Encoding": "gzip"})
    assert response.status_code == 400 and "not valid gzip" in response.json()["error"]
