"""The per-minute rollup equals the deduplicated logs, after crashes and racing writers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import requests

from telemetry import TelemetryWriter
from telemetry.rollup import RollupReconciler
from tests.helpers import read_store, wait_until
from watchloop.services.base import free_port

PER_MINUTE = """
SELECT model, model_version, minute, logs, rollup FROM (
    SELECT model, model_version, toStartOfMinute(event_time) AS minute, count() AS logs
    FROM inference_logs FINAL GROUP BY ALL
) AS l FULL OUTER JOIN (
    SELECT model, model_version, minute, sum(requests) AS rollup
    FROM inference_rollup_1m GROUP BY ALL
) AS r USING (model, model_version, minute)
ORDER BY model, model_version, minute
SETTINGS join_use_nulls = 0
"""


def _logs(prefix: str, n: int, spread_s: float = 600) -> list[dict]:
    now = time.time()
    return [{"request_id": f"{prefix}-{i}", "model": "fraud", "version": "1",
             "event_time": now - spread_s * i / n, "latency_ms": float(i % 50),
             "status": "error" if i % 10 == 0 else "ok"} for i in range(n)]


def _diverging(store) -> list[tuple]:
    return [row for row in store.query(PER_MINUTE) if row[3] != row[4]]


def test_the_reconciler_repairs_a_missed_view_insert_and_a_racing_duplicate(store):
    TelemetryWriter(store).write_logs(_logs("a", 600), "t")
    expected = store.query(
        "SELECT minute, requests, errors, latency_sum_ms FROM inference_rollup_1m FINAL "
        "ORDER BY minute")
    # A racing writer stored three records again (the logs collapse them; the view did not),
    # and a crash lost the view's insert for one minute.
    store.command("INSERT INTO inference_logs SELECT * FROM inference_logs "
                  "WHERE request_id IN ('a-1', 'a-2', 'a-300')")
    store.command("DELETE FROM inference_rollup_1m WHERE minute = "
                  "(SELECT max(minute) FROM inference_rollup_1m)")
    diverged = _diverging(store)
    assert len(diverged) >= 2

    reconciler = RollupReconciler(store)
    assert reconciler.reconcile(store.now() - timedelta(hours=1)) == len(diverged)
    assert _diverging(store) == []
    # Rebuilt minutes hold what the view would have written: counts, errors, latency.
    assert store.query(
        "SELECT minute, sum(requests), sum(errors), round(sum(latency_sum_ms), 6) "
        "FROM inference_rollup_1m GROUP BY minute ORDER BY minute") == [
        (m, r, e, round(s, 6)) for m, r, e, s in expected]
    assert reconciler.reconcile(store.now() - timedelta(hours=1)) == 0


def test_a_minute_two_reconcilers_rebuilt_at_once_is_repaired_by_the_next_pass(store):
    TelemetryWriter(store).write_logs(_logs("b", 300), "t")
    store.command("INSERT INTO inference_logs SELECT * FROM inference_logs "
                  "WHERE request_id = 'b-1'")  # a racing duplicate: one minute differs
    # The reconciler's clock runs an hour ahead, so the logs' ingest is long past its
    # overlap window once the window moves on.
    reconciler = RollupReconciler(store, interval_s=1, clock=lambda: store.now() + HOUR)
    since = store.now() - HOUR
    after_repair = reconciler.run_pass(since)
    assert _diverging(store) == []
    # Another process rebuilt the same minute at the same moment: it is counted twice.
    store.command("INSERT INTO inference_rollup_1m SELECT * FROM inference_rollup_1m "
                  "WHERE minute = (SELECT max(minute) FROM inference_rollup_1m)")
    assert len(_diverging(store)) == 1
    after_second = reconciler.run_pass(after_repair)
    assert _diverging(store) == []
    moved_on = reconciler.run_pass(after_second)  # nothing left: the window moves on
    assert moved_on > store.now()


HOUR = timedelta(hours=1)


def _start(tmp_path: Path, port: int) -> subprocess.Popen:
    config = {"data_dir": str(tmp_path / "data"), "api": {"port": port},
              "console": {"enabled": False},
              "ingest": {"rollup_check_interval": "1h"}}  # only the pass at start repairs
    path = tmp_path / "watchloop.yaml"
    path.write_text(json.dumps(config))
    return subprocess.Popen([sys.executable, "-m", "watchloop.cli", "-c", str(path), "up"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _ready(url: str, process: subprocess.Popen) -> bool:
    assert process.poll() is None, process.communicate()[1][-3000:]
    try:
        return requests.get(f"{url}/readyz", timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_kill_9_during_http_ingest_never_leaves_the_rollup_diverged(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sent: list[dict] = []
    for _round in range(3):
        process = _start(tmp_path, port)
        wait_until(lambda p=process: _ready(url, p), timeout=90)
        stop = threading.Event()

        def post(stop: threading.Event = stop) -> None:
            session = requests.Session()
            while not stop.is_set():
                batch = _logs(uuid.uuid4().hex[:8], 500)
                try:
                    session.post(f"{url}/v1/logs", json=batch, timeout=10)
                    # a client that did not hear back resends: a duplicate for the writer
                    session.post(f"{url}/v1/logs", json=batch[:100], timeout=10)
                except requests.RequestException:
                    return
                sent.extend(batch)

        clients = [threading.Thread(target=post) for _ in range(2)]
        for client in clients:
            client.start()
        time.sleep(1.5)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)  # reaps it and closes its pipes
        stop.set()
        for client in clients:
            client.join(timeout=30)
    final = _start(tmp_path, port)
    wait_until(lambda: _ready(url, final), timeout=90)
    final.send_signal(signal.SIGTERM)
    _, err = final.communicate(timeout=60)
    assert final.returncode == 0, err[-3000:]

    rows = read_store(f"chdb://{tmp_path / 'data' / 'store'}?database=watchloop", PER_MINUTE)
    assert sum(row[3] for row in rows) > 0
    assert [row for row in rows if row[3] != row[4]] == []
