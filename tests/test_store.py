"""The store: URLs, migrations, point-in-time reads and the single-owner lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta

import pytest

from telemetry import (
    MigrationError,
    Migrator,
    PointInTime,
    StoreError,
    StoreLocation,
    TelemetryWriter,
    bundled_migrations,
)
from telemetry.migrations import Migration


def _schema(store) -> list[tuple]:
    return store.query(
        "SELECT name, engine, create_table_query FROM system.tables "
        "WHERE database = {db:String} ORDER BY name",
        {"db": store.database},
    )


def test_migrations_applied_twice_give_the_same_schema(store):
    before = _schema(store)
    assert Migrator(store).migrate() == []
    assert _schema(store) == before
    names = {name for name, _, _ in before}
    assert {"inference_logs", "labels", "serving_metrics", "gpu_metrics", "kafka_lag",
            "drift_results", "alert_events", "retrain_runs", "deployments", "dead_letters",
            "inference_rollup_1m", "inference_rollup_1m_mv", "schema_migrations"} <= names
    statuses = Migrator(store).status()
    assert [s.version for s in statuses] == [m.version for m in bundled_migrations()]
    assert all(s.applied for s in statuses)


def test_an_edited_migration_is_refused(store):
    first = bundled_migrations()[0]
    edited = Migration(first.version, first.name, first.sql + "\n-- edited\nSELECT 1;")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        Migrator(store, [edited]).migrate()


def test_a_failing_migration_names_itself_and_is_not_recorded(store):
    broken = Migration(999, "broken", "CREATE TABLE nope (x NoSuchType) ENGINE = Memory;")
    with pytest.raises(MigrationError, match="0999_broken"):
        Migrator(store, [*bundled_migrations(), broken]).migrate()
    assert not Migrator(store, [*bundled_migrations(), broken]).status()[-1].applied


@pytest.mark.parametrize(
    ("url", "backend", "database", "display"),
    [
        ("chdb:///var/lib/wl", "chdb", "watchloop", "chdb:///var/lib/wl"),
        ("chdb://memory?database=x", "chdb", "x", "chdb://memory"),
        ("http://ops@ch.internal:8123/metrics", "http", "metrics",
         "http://ops@ch.internal:8123/metrics"),
        ("https://ch.internal", "http", "watchloop", "https://default@ch.internal:8443/watchloop"),
    ],
)
def test_store_urls_parse(url, backend, database, display):
    location = StoreLocation.parse(url)
    assert (location.backend, location.database, location.display) == (backend, database, display)


@pytest.mark.parametrize("url", ["chdb://relative/dir", "postgres://x", "http:///nohost"])
def test_bad_store_urls_say_what_is_expected(url):
    with pytest.raises(StoreError, match="expected|absolute"):
        StoreLocation.parse(url)


def _log(request_id: str, event_time: datetime, **extra) -> dict:
    return {"request_id": request_id, "model": "fraud", "version": "1",
            "event_time": event_time.isoformat(), "latency_ms": 5.0, **extra}


def test_as_of_reads_ignore_rows_ingested_later(store):
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    clock = [noon - timedelta(days=1)]
    writer = TelemetryWriter(store, clock=lambda: clock[0])
    event = clock[0] - timedelta(hours=1)
    writer.write_logs([_log("early", event)], "test")
    writer.write_labels([{"request_id": "early", "label": 1, "label_time": event}], "test")
    clock[0] += timedelta(hours=2)
    writer.write_logs([_log("late", event)], "test")
    writer.write_labels([{"request_id": "early", "label": 0, "label_time": event}], "test")

    cutoff = PointInTime(noon - timedelta(days=1) + timedelta(hours=1))
    count_logs = f"SELECT count() FROM {cutoff.source('inference_logs')}"
    assert store.scalar(count_logs, cutoff.params) == 1
    latest_label = (f"SELECT argMax(label, ingest_time) FROM {cutoff.source('labels')} "
                    "WHERE request_id = 'early'")
    assert store.scalar(latest_label, cutoff.params) == "1"  # the correction came later
    now = PointInTime()
    assert store.scalar(f"SELECT count() FROM {now.source('inference_logs')}") == 2
    assert store.scalar(
        f"SELECT argMax(label, ingest_time) FROM {now.source('labels')}") == "0"


def test_as_of_rejects_a_non_table_name():
    with pytest.raises(ValueError, match="not a table name"):
        PointInTime().source("logs; DROP TABLE labels")


_HOLD = textwrap.dedent("""
    import sys, time
    from telemetry import open_store
    store = open_store(sys.argv[1])
    print("open", flush=True)
    time.sleep(60)
""")


def test_a_second_process_opening_the_same_embedded_store_gets_a_clear_error(tmp_path):
    url = f"chdb://{tmp_path / 'store'}"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, url], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        second = subprocess.run(
            [sys.executable, "-m", "watchloop.cli", "store", "status", "--store", url],
            capture_output=True, text=True, timeout=60,
        )
        assert second.returncode == 1
        assert "Traceback" not in second.stderr
        assert f"already open in process {holder.pid}" in second.stderr
        assert "Only one process can own an embedded store" in second.stderr
    finally:
        holder.kill()
        holder.communicate(timeout=30)


def test_an_embedded_store_keeps_rows_after_its_owner_is_killed(tmp_path):
    url = f"chdb://{tmp_path / 'store'}"
    write = textwrap.dedent("""
        import sys, os, time
        from telemetry import Migrator, TelemetryWriter, open_store
        store = open_store(sys.argv[1]); Migrator(store).migrate()
        rows = [{"request_id": f"r{i}", "model": "m", "version": "1",
                 "event_time": time.time(), "latency_ms": 1} for i in range(100)]
        print(TelemetryWriter(store).write_logs(rows, "t").accepted, flush=True)
        os.kill(os.getpid(), 9)
    """)
    done = subprocess.run([sys.executable, "-c", write, url], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "100"
    read = ("import sys; from telemetry import open_store; "
            "print(open_store(sys.argv[1]).scalar('SELECT count() FROM inference_logs'))")
    again = subprocess.run([sys.executable, "-c", read, url], capture_output=True, text=True,
                           timeout=60)
    assert again.stdout.strip() == "100", again.stderr[-2000:]


def test_the_store_reports_its_queries_errors_as_store_errors(store):
    with pytest.raises(StoreError, match="query"):
        store.query("SELECT * FROM no_such_table")
    started = time.monotonic()
    assert store.ping()
    assert time.monotonic() - started < 60


def test_an_unreachable_server_is_named_and_retried_with_backoff():
    from telemetry import StoreUnavailableError, open_store
    from watchloop.services.base import free_port

    waits: list[float] = []
    url = f"http://watchloop@127.0.0.1:{free_port()}/metrics"
    with pytest.raises(StoreUnavailableError) as caught:
        open_store(url, attempts=4, backoff_s=0.5, sleep=waits.append)
    assert waits == [0.5, 1.0, 2.0]
    message = str(caught.value)
    assert "http://watchloop@127.0.0.1:" in message and "Connection refused" in message
    assert "query_id" not in message


def test_a_wrong_password_is_an_authentication_error_not_retried(clickhouse_server):
    from telemetry import open_store
    from telemetry.errors import StoreAuthenticationError, UnavailableError

    waits: list[float] = []
    with pytest.raises(StoreAuthenticationError) as caught:
        open_store(clickhouse_server.url("watchloop"), password="not-the-password",
                   attempts=4, sleep=waits.append)
    assert waits == []  # retrying would not help
    assert not isinstance(caught.value, UnavailableError)
    message = str(caught.value)
    assert "refused the credentials" in message and clickhouse_server.address in message
    assert "not-the-password" not in message


def test_a_migration_lock_left_by_a_dead_process_is_broken(store):
    import time as _time

    from telemetry.claims import create_marker
    from telemetry.migrations import MigrationLock

    assert create_marker(store, MigrationLock.NAME)  # a process died holding the lock
    assert not create_marker(store, MigrationLock.NAME)
    _time.sleep(1.2)
    with MigrationLock(store, stale_after_s=0.5, poll_s=0.05):
        assert not create_marker(store, MigrationLock.NAME)  # now ours
    assert create_marker(store, MigrationLock.NAME)  # released on exit
