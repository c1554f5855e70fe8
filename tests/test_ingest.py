"""Ingest: good records are stored, bad ones dead-lettered with a reason, redeliveries once."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from telemetry import TelemetryWriter
from telemetry.queries import table_summaries

NOW_MS = int(time.time() * 1000)


def _log(i: int, **overrides) -> dict:
    record = {"request_id": f"req-{i}", "model": "fraud", "version": 2,
              "event_time": NOW_MS + i, "latency_ms": 3.5, "status": "ok",
              "features": {"amount": 10.0 + i, "country": "DE", "missing": None},
              "prediction": 0.25}
    record.update(overrides)
    return record


def _dead_letters(store) -> list[tuple[str, str]]:
    return store.query("SELECT reason, payload FROM dead_letters ORDER BY reason")


def test_a_batch_with_bad_records_stores_the_good_and_dead_letters_the_bad(store):
    writer = TelemetryWriter(store, known_models={"fraud"}, max_record_bytes=2_000)
    bad = [
        "{not json",
        {"model": "fraud", "version": 1, "event_time": 1, "latency_ms": 1},
        _log(101, latency_ms="fast"),
        json.dumps(_log(102)).replace("3.5", "NaN"),
        _log(103, latency_ms=float("inf")),
        _log(104, latency_ms=-1),
        _log(105, model="unknown-model"),
        _log(106, features={"blob": "x" * 3_000}),
        ["not", "an", "object"],
        _log(107, status="maybe"),
        _log(108, event_time="2020-01-01T00:00:00Z"),
        _log(109, features={"amount": float("nan")}),
    ]
    good = [_log(i) for i in range(5)] + [json.dumps(_log(5)).encode()]
    result = writer.write_logs(good[:3] + bad + good[3:], "test")

    assert (result.accepted, result.rejected, result.duplicates) == (6, len(bad), 0)
    assert store.scalar("SELECT count() FROM inference_logs") == 6
    reasons = [r.reason for r in result.rejections]
    assert "invalid JSON" in reasons[0]
    assert "request_id: Field required" in reasons[1]
    assert reasons[2].startswith("latency_ms:")
    assert "NaN is not a JSON number" in reasons[3] and "latency_ms" in reasons[4]
    assert "greater than or equal to 0" in reasons[5]
    assert "unknown model 'unknown-model'" in reasons[6]
    assert "exceeds the limit of 2000 bytes" in reasons[7]
    assert "expected a JSON object" in reasons[8]
    assert reasons[9].startswith("status:")
    assert "older than the 90-day retention" in reasons[10]
    assert reasons[11].startswith("features.amount:")
    stored = _dead_letters(store)
    assert len(stored) == len(bad)
    assert sorted(r for r, _ in stored) == sorted(reasons)
    assert any(payload == "{not json" for _, payload in stored)  # the raw payload is kept


def test_features_split_into_numeric_and_categorical_maps(store):
    TelemetryWriter(store).write_logs([_log(1, features={"a": 1, "b": True, "c": "FR"})], "t")
    numeric, categorical = store.query(
        "SELECT numeric_features, categorical_features FROM inference_logs")[0]
    assert numeric == {"a": 1.0, "b": 1.0}
    assert categorical == {"c": "FR"}


def test_a_redelivered_batch_is_not_double_counted(store):
    writer = TelemetryWriter(store)
    batch = [_log(i) for i in range(50)]
    first = writer.write_logs(batch, "kafka")
    again = writer.write_logs(batch + [_log(50), _log(50)], "kafka")

    assert (first.accepted, first.duplicates) == (50, 0)
    assert (again.accepted, again.duplicates) == (1, 51)
    assert store.scalar("SELECT count() FROM inference_logs") == 51
    assert store.scalar("SELECT sum(requests) FROM inference_rollup_1m") == 51
    summary = {s.table: s for s in table_summaries(store)}
    assert summary["inference_logs"].rows == 51


def test_even_a_duplicate_that_slips_past_the_writer_counts_once_in_reads(store):
    # Two writers racing on the same request id both insert; ReplacingMergeTree plus FINAL
    # reads keep one row, and the earliest delivery, before any merge.
    TelemetryWriter(store, clock=lambda: _at(100)).write_logs([_log(1)], "a")
    store.insert("inference_logs", [["req-1", "fraud", "2", NOW_MS + 1, _at(200), 3.5,
                                     "ok", "", {}, {}, 0.25, "", "b"]],
                 ["request_id", "model", "model_version", "event_time", "ingest_time",
                  "latency_ms", "status", "error", "numeric_features", "categorical_features",
                  "prediction", "prediction_label", "source"])
    assert store.scalar("SELECT count() FROM inference_logs FINAL") == 1
    assert store.scalar("SELECT source FROM inference_logs FINAL") == "a"
    store.command("OPTIMIZE TABLE inference_logs FINAL")
    assert store.query("SELECT source FROM inference_logs") == [("a",)]


def _at(seconds: int):
    from datetime import UTC, datetime
    return datetime.fromtimestamp(NOW_MS / 1000 + seconds, UTC)


def test_labels_are_validated_and_redelivered_labels_are_not_duplicated(store):
    writer = TelemetryWriter(store)
    labels = [{"request_id": f"req-{i}", "label": i % 2, "label_time": time.time()}
              for i in range(10)]
    bad = [{"request_id": "x", "label": None, "label_time": time.time()},
           {"label": 1, "label_time": time.time()}]
    result = writer.write_labels(labels + bad, "test")
    assert (result.accepted, result.rejected) == (10, 2)
    assert writer.write_labels(labels, "test").duplicates == 10
    assert store.scalar("SELECT count() FROM labels") == 10
    assert store.scalar("SELECT count() FROM dead_letters WHERE kind = 'label'") == 2
    assert store.query("SELECT label, label_value FROM labels WHERE request_id = 'req-1'") == [
        ("1", 1.0)]


def test_string_predictions_and_labels_are_kept_as_classes(store):
    writer = TelemetryWriter(store)
    writer.write_logs([_log(1, prediction="spam")], "t")
    writer.write_labels([{"request_id": "req-1", "label": "ham", "label_time": time.time()}], "t")
    assert store.query("SELECT prediction, prediction_label FROM inference_logs") == [
        (None, "spam")]
    assert store.query("SELECT label, label_value FROM labels") == [("ham", None)]


_CRASH = """
import os, sys, time
from telemetry import Migrator, TelemetryWriter, open_store
store = open_store(sys.argv[1])
Migrator(store).migrate()
TelemetryWriter(store).write_logs([{"request_id": "a", "model": "m", "version": 1,
                                    "event_time": time.time(), "latency_ms": 1}], "t")
os.kill(os.getpid(), 9)
"""

_REOPEN = """
import sys, time
from telemetry import TelemetryWriter, open_store
store = open_store(sys.argv[1])
writer = TelemetryWriter(store)
writer.write_logs([{"request_id": "b", "model": "m", "version": 1,
                    "event_time": time.time(), "latency_ms": 1}], "t")
writer.close()
scratch = store.scalar("SELECT count() FROM system.tables WHERE database = currentDatabase() "
                       "AND match(name, '^_(intake|parsed)_logs_')")
print(scratch, store.scalar("SELECT count() FROM inference_logs"))
"""


def test_scratch_tables_of_a_killed_owner_are_dropped_by_the_next(tmp_path):
    url = f"chdb://{tmp_path / 'store'}"
    subprocess.run([sys.executable, "-c", _CRASH, url], timeout=120, check=False)
    done = subprocess.run([sys.executable, "-c", _REOPEN, url], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.split() == ["0", "2"], done.stderr[-2000:]
