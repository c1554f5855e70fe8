"""Several Watchloop processes on one ClickHouse server database.

Each process here is a real ``python`` child talking HTTP to the server (chdb-core's listener,
``watchloop.services.ClickHouseServer``), as separate machines would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

from telemetry import Migrator, open_store
from telemetry.migrations import bundled_migrations
from telemetry.rollup import RollupReconciler
from telemetry.store import PASSWORD_ENV

_MIGRATE = """
import sys
from telemetry import Migrator, open_store
print(len(Migrator(open_store(sys.argv[1])).migrate()))
"""

_WRITE = """
import json, sys
from telemetry import TelemetryWriter, open_store
store = open_store(sys.argv[1])
records = json.load(open(sys.argv[3]))
writer = TelemetryWriter(store)
result = writer.write_logs(records, sys.argv[2])
writer.close()
print(result.accepted)
"""


def _env(server) -> dict[str, str]:
    return {**os.environ, PASSWORD_ENV: server.password}


def _spawn(server, script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *args], env=_env(server),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-3000:]
    return out.strip()


def test_processes_starting_at_once_apply_each_migration_once(clickhouse_server,
                                                              monkeypatch):
    url = clickhouse_server.url(f"m_{uuid.uuid4().hex[:10]}")
    processes = [_spawn(clickhouse_server, _MIGRATE, url) for _ in range(4)]
    applied = [int(_finish(p)) for p in processes]
    assert sorted(applied) == [0, 0, 0, len(bundled_migrations())]  # one migrated, all agree
    monkeypatch.setenv(PASSWORD_ENV, clickhouse_server.password)
    with open_store(url) as store:
        rows = store.scalar("SELECT count() FROM schema_migrations")
        store.command(f"DROP DATABASE `{store.database}`")
    assert rows == len(bundled_migrations())


def test_two_processes_receiving_the_same_records_at_once_count_them_once(
        clickhouse_server, monkeypatch, tmp_path):
    url = clickhouse_server.url(f"w_{uuid.uuid4().hex[:10]}")
    _finish(_spawn(clickhouse_server, _MIGRATE, url))
    now = time.time()
    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps([{"request_id": f"r{i}", "model": "fraud", "version": "1",
                           "event_time": now - i * 0.1, "latency_ms": 1.0}
                          for i in range(2000)]))
    writers = [_spawn(clickhouse_server, _WRITE, url, name, str(batch)) for name in ("a", "b")]
    accepted = [int(_finish(w)) for w in writers]
    assert sum(accepted) >= 2000  # both may take a record when they race; the store keeps one
    monkeypatch.setenv(PASSWORD_ENV, clickhouse_server.password)
    with open_store(url) as store:
        RollupReconciler(store).reconcile(store.now() - timedelta(hours=1))
        logs = store.scalar("SELECT count() FROM inference_logs FINAL")
        rollup = store.scalar("SELECT sum(requests) FROM inference_rollup_1m")
        store.command(f"DROP DATABASE `{store.database}`")
    assert (logs, rollup) == (2000, 2000)


def test_a_killed_writers_scratch_tables_are_dropped_on_a_server(clickhouse_server,
                                                                 monkeypatch):
    url = clickhouse_server.url(f"s_{uuid.uuid4().hex[:10]}")
    _finish(_spawn(clickhouse_server, _MIGRATE, url))
    writer = subprocess.Popen(
        [sys.executable, "-c", "import json, os, sys, time\n" + _WRITE.split("records =")[0]
         + "writer = TelemetryWriter(store)\nwriter.write_logs([], 'x')\n"
         "writer._intake._ensure_tables()\nprint('ready', flush=True)\ntime.sleep(600)",
         url, "x"], env=_env(clickhouse_server), stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ready"
    writer.kill()  # kill -9: its scratch tables stay behind
    writer.communicate(timeout=30)
    monkeypatch.setenv(PASSWORD_ENV, clickhouse_server.password)
    scratch = ("SELECT count() FROM system.tables WHERE database = {db:String} "
               "AND name LIKE '\\\\_%\\\\_logs\\\\_%'")
    with open_store(url) as store:
        assert store.scalar(scratch, {"db": store.database}) == 3
        from telemetry import TelemetryWriter

        next_writer = TelemetryWriter(store)
        next_writer.write_logs([{"request_id": "a"}], "t")  # the next writer on this host
        assert store.scalar(scratch, {"db": store.database}) == 3  # its own three only
        next_writer.close()
        assert store.scalar(scratch, {"db": store.database}) == 0
        store.command(f"DROP DATABASE `{store.database}`")


def _up(tmp_path, name: str, store_url: str, port: int) -> subprocess.Popen:
    config = {
        "data_dir": str(tmp_path / name),
        "store": {"type": "clickhouse", "url": store_url,
                  "password": "${WATCHLOOP_CLICKHOUSE_PASSWORD}"},
        "api": {"port": port},
        "console": {"enabled": False},
        "monitors": {"interval": "2s", "latency": {"window": "5m"}},
        "ingest": {"rollup_check_interval": "1s"},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(config))
    return subprocess.Popen([sys.executable, "-m", "watchloop.cli", "-c", str(path), "up"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ})


def test_two_watchloop_processes_on_one_server_database(clickhouse_server, monkeypatch,
                                                        tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from tests.helpers import wait_until
    from watchloop.services.base import free_port

    monkeypatch.setenv(PASSWORD_ENV, clickhouse_server.password)
    url = clickhouse_server.url(f"up_{uuid.uuid4().hex[:10]}")
    ports = [free_port(), free_port()]
    processes = [_up(tmp_path, f"p{i}", url, port) for i, port in enumerate(ports)]

    def ready(port: int) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).ok
        except requests.ConnectionError:
            return False

    try:
        for process, port in zip(processes, ports, strict=True):
            wait_until(lambda p=port, pr=process: pr.poll() is None and ready(p), timeout=90)
        now = time.time()
        batches = [[{"request_id": f"r{b}-{i}", "model": "fraud", "version": "1",
                     "event_time": now - i * 0.05, "latency_ms": float(i % 20)}
                    for i in range(500)] for b in range(6)]

        def post(job: tuple[int, list]) -> int:
            port, batch = job
            return requests.post(f"http://127.0.0.1:{port}/v1/logs", json=batch,
                                 timeout=60).json()["accepted"]

        # Every batch goes to both processes at once.
        with ThreadPoolExecutor(12) as pool:
            list(pool.map(post, [(port, batch) for batch in batches for port in ports]))
        with open_store(url) as store:
            wait_until(lambda: store.scalar(
                "SELECT uniqExact(toStartOfInterval(ts, INTERVAL 2 SECOND)) "
                "FROM monitor_results") >= 3, timeout=60)
            # The processes' own reconcilers repair what their racing view inserts counted
            # twice.
            wait_until(lambda: store.scalar("SELECT sum(requests) FROM inference_rollup_1m")
                       == 3000, timeout=30)
            logs = store.scalar("SELECT count() FROM inference_logs FINAL")
            rollup = store.scalar("SELECT sum(requests) FROM inference_rollup_1m")
            migrations = store.scalar("SELECT count() FROM schema_migrations")
            per_tick = store.scalar(
                "SELECT max(c) FROM (SELECT count() AS c FROM monitor_results "
                "GROUP BY monitor, model, model_version, metric, "
                "intDiv(toUnixTimestamp64Milli(ts), 2000))")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.communicate(timeout=60)
    assert (logs, rollup) == (3000, 3000)
    assert migrations == len(bundled_migrations())
    assert per_tick == 1  # each tick's result written by one process, not both


_CONSOLE = """
import sys
from streamlit.testing.v1 import AppTest
app = AppTest.from_file(sys.argv[1], default_timeout=60)
app.run()
app.switch_page("views/pipelines.py").run()
assert not app.exception, [e.message for e in app.exception]
print(app.dataframe[-1].value.set_index("table").loc["inference_logs", "rows"])
"""


def test_two_collectors_in_one_consumer_group_share_a_topic_into_one_server(
        clickhouse_server, kafka_broker, monkeypatch, tmp_path):
    from kafka import KafkaAdminClient, KafkaProducer

    from tests.helpers import wait_until
    from watchloop.services.base import free_port

    monkeypatch.setenv(PASSWORD_ENV, clickhouse_server.password)
    url = clickhouse_server.url(f"kc_{uuid.uuid4().hex[:10]}")
    topic, group = f"logs-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap_servers)
    admin.create_topics({topic: {"num_partitions": 4, "replication_factor": 1}})
    admin.close()
    with open_store(url) as store:
        Migrator(store).migrate()
    processes = []
    for name in ("collector-a", "collector-b"):
        config = {
            "data_dir": str(tmp_path / name),
            "store": {"type": "clickhouse", "url": url,
                      "password": "${WATCHLOOP_CLICKHOUSE_PASSWORD}"},
            "api": {"port": free_port()}, "console": {"enabled": False},
            "collectors": {"runner": {"batch_size": 500, "flush_interval_s": 0.1},
                           "sources": [{"type": "kafka", "name": name, "group_id": group,
                                        "bootstrap_servers": kafka_broker.bootstrap_servers,
                                        "log_topics": [topic]}]},
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(json.dumps(config))
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "watchloop.cli", "-c", str(path), "up"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ}))
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, linger_ms=5)
    now = time.time()
    for i in range(3000):
        record = {"request_id": f"k{i}", "model": "fraud", "version": "1",
                  "event_time": now - i * 0.01, "latency_ms": 1.0}
        producer.send(topic, json.dumps(record).encode(), partition=i % 4)
    producer.flush()
    producer.close()
    try:
        with open_store(url) as store:
            wait_until(lambda: store.query("SELECT count() FROM inference_logs FINAL")
                       == [(3000,)] or [p.poll() for p in processes if p.poll()], timeout=120)
            by_source = dict(store.query(
                "SELECT source, count() FROM inference_logs GROUP BY source"))
    finally:
        for process in processes:
            process.terminate()
        errors = [process.communicate(timeout=60)[1] for process in processes]
    assert all(p.returncode == 0 for p in processes), [e[-2000:] for e in errors]
    # Every record once, whichever collector the group gave its partition to (which one
    # takes what depends on who joined first; both stored into the same database).
    assert sum(by_source.values()) == 3000
    assert set(by_source) <= {"collector-a", "collector-b"}

    # A console in a process of its own reads the same server.
    app = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
    console = subprocess.run([sys.executable, "-c", _CONSOLE, app], capture_output=True,
                             text=True, timeout=120,
                             env={**os.environ, "WATCHLOOP_STORE_URL": url})
    assert console.returncode == 0, console.stderr[-3000:]
    assert console.stdout.strip().splitlines()[-1] == "3,000"
    with open_store(url) as store:
        store.command(f"DROP DATABASE `{store.database}`")


def test_watchloop_store_serve_runs_a_server_others_share(tmp_path, monkeypatch):
    from tests.helpers import wait_until
    from watchloop.services.base import free_port, http_ready

    port = free_port()
    monkeypatch.setenv(PASSWORD_ENV, "s3cret-from-env")
    serve = subprocess.Popen(
        [sys.executable, "-m", "watchloop.cli", "store", "serve", "--data-dir",
         str(tmp_path / "ch"), "--port", str(port), "--tcp-port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        wait_until(lambda: http_ready(f"http://127.0.0.1:{port}/ping"), timeout=60)
        with open_store(f"http://watchloop@127.0.0.1:{port}/shared") as store:
            assert len(Migrator(store).migrate()) == len(bundled_migrations())
        monkeypatch.setenv(PASSWORD_ENV, "wrong")
        refused = subprocess.run(
            [sys.executable, "-m", "watchloop.cli", "store", "status", "--store",
             f"http://watchloop@127.0.0.1:{port}/shared"], capture_output=True, text=True,
            timeout=60, env={**os.environ})
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
    finally:
        serve.send_signal(signal.SIGTERM)
        out, err = serve.communicate(timeout=60)
    assert serve.returncode == 0, err[-2000:]
    assert f"http://watchloop@127.0.0.1:{port}/watchloop" in out


def test_on_a_server_a_slow_query_does_not_hold_up_ingest(clickhouse_server, monkeypatch):
    import threading

    from telemetry import TelemetryWriter

    monkeypatch.setenv(PASSWORD_ENV, clickhouse_server.password)
    url = clickhouse_server.url(f"c_{uuid.uuid4().hex[:10]}")
    with open_store(url) as store:
        Migrator(store).migrate()
        slow_done = threading.Event()

        def slow_console_query() -> None:
            store.query("SELECT sum(sleepEachRow(1)) FROM numbers(3) SETTINGS max_block_size = 1")
            slow_done.set()

        console = threading.Thread(target=slow_console_query)
        console.start()
        time.sleep(0.3)  # the slow query is running
        result = TelemetryWriter(store).write_logs(
            [{"request_id": f"r{i}", "model": "m", "version": "1", "event_time": time.time(),
              "latency_ms": 1.0} for i in range(100)], "t")
        stored_while_slow_ran = not slow_done.is_set()
        console.join(timeout=30)
        store.command(f"DROP DATABASE `{store.database}`")
    assert result.accepted == 100
    assert stored_while_slow_ran  # the batch did not wait for the 3-second query
