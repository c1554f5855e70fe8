"""``watchloop up`` evaluating rules, as users run it: a receiver down for 30 s, and the
Watchloop process killed with -9 in the middle of the outage. Every notification still
arrives, exactly once, counted at the receiver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import timedelta

from drift.results import ResultWriter
from telemetry import Migrator, open_store
from telemetry.clock import utc_now
from telemetry.store import PASSWORD_ENV
from tests.helpers import Receiver, wait_until
from watchloop.services.base import free_port


def _up(tmp_path, config: dict, server) -> subprocess.Popen:
    path = tmp_path / "watchloop.yaml"
    path.write_text(json.dumps(config))
    return subprocess.Popen([sys.executable, "-m", "watchloop.cli", "-c", str(path), "up",
                             "--no-console"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, PASSWORD_ENV: server.password})


def _history(url: str, start, seconds: int, incidents: list[range]) -> None:
    """A p99 each second from ``start`` on, written ahead: each row is seen once its time
    comes (ingested at its own time); 80 ms in the incidents' seconds, else 20 ms."""
    with open_store(url) as store:
        Migrator(store).migrate()
        for s in range(seconds):
            at = start + timedelta(seconds=s)
            value = 80.0 if any(s in incident for incident in incidents) else 20.0
            ResultWriter(store, clock=lambda at=at: at).write_metrics(
                "latency", "fraud", "7", at - timedelta(seconds=5), at,
                {"latency_p99_ms": value}, at, status="ok")


def _config(url: str, redis_url: str, prefix: str, receiver: Receiver, **alerts) -> dict:
    """``watchloop up`` on the server, evaluating one 1-second p99 rule into a webhook."""
    return {
        "store": {"type": "clickhouse", "url": url}, "api": {"port": free_port()},
        "console": {"enabled": False},
        "alerts": {
            "redis_url": redis_url, "prefix": prefix, **alerts,
            "rules": [{"name": "fraud-p99", "interval": "1s", "threshold": {
                "series": {"monitor": "latency", "metric": "latency_p99_ms", "max_age": "5s"},
                "op": ">", "value": 50}}],
            "receivers": [{"name": "hook", "type": "webhook", "url": receiver.url}],
            "route": {"receivers": ["hook"]},
        },
    }


def test_an_outage_and_a_kill_9_deliver_every_notification_exactly_once(
        tmp_path, clickhouse_server, redis_server, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, clickhouse_server.password)
    url = clickhouse_server.url(f"t_{uuid.uuid4().hex[:10]}")
    start = utc_now() + timedelta(seconds=3)
    _history(url, start, 60, [range(2, 8), range(16, 22)])
    receiver = Receiver()
    receiver.failing = True
    config = _config(url, redis_server.url, f"p{uuid.uuid4().hex[:8]}", receiver,
                     lease_ttl="3s", retry_max="2s")
    first = _up(tmp_path, config, clickhouse_server)
    try:
        time.sleep((start - utc_now()).total_seconds() + 12)  # incident one fired and resolved
        first.send_signal(signal.SIGKILL)  # mid-outage: both notifications undelivered
        first.communicate(timeout=30)
        assert receiver.posts == []
        second = _up(tmp_path, config, clickhouse_server)
        try:
            time.sleep(max(0.0, (start + timedelta(seconds=33) - utc_now()).total_seconds()))
            receiver.failing = False  # back after about 30 s
            wait_until(lambda: len(receiver.posts) >= 4, timeout=60)
            time.sleep(3)  # nothing more arrives
        finally:
            second.send_signal(signal.SIGTERM)
            _, err = second.communicate(timeout=60)
        assert second.returncode == 0, err[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate(timeout=30)
        receiver.close()
    keys = [p["headers"]["X-Watchloop-Idempotency-Key"] for p in receiver.posts]
    assert len(keys) == len(set(keys)) == 4
    statuses = Counter(p["body"]["watchloop"]["status"] for p in receiver.posts)
    assert statuses == {"firing": 2, "resolved": 2}


def test_two_processes_one_leader_killed_mid_run_lose_and_double_no_notification(
        tmp_path, clickhouse_server, redis_server, monkeypatch):
    import redis

    monkeypatch.setenv(PASSWORD_ENV, clickhouse_server.password)
    url = clickhouse_server.url(f"t_{uuid.uuid4().hex[:10]}")
    start = utc_now() + timedelta(seconds=8)
    _history(url, start, 40, [range(2, 6), range(14, 18)])
    receiver = Receiver()
    prefix = f"p{uuid.uuid4().hex[:8]}"
    processes = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        config = _config(url, redis_server.url, prefix, receiver, lease_ttl="2s")
        processes.append(_up(tmp_path / name, config, clickhouse_server))
    client = redis.Redis.from_url(redis_server.url)
    try:
        wait_until(lambda: client.get(f"{prefix}:alerts:leader"), timeout=60)
        time.sleep(max(0.0, (start + timedelta(seconds=10) - utc_now()).total_seconds()))
        assert len(receiver.posts) == 2  # incident one: fired and resolved
        leader_pid = int(client.get(f"{prefix}:alerts:leader").decode().split("-")[-2])
        [leader] = [p for p in processes if p.pid == leader_pid]
        leader.send_signal(signal.SIGKILL)  # the standby takes over within the lease
        leader.communicate(timeout=30)
        wait_until(lambda: len(receiver.posts) >= 4, timeout=60)
        time.sleep(3)
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        errors = [p.communicate(timeout=60)[1] for p in processes]
        client.close()
        receiver.close()
    survivor = [p for p in processes if p.pid != leader_pid][0]
    assert survivor.returncode == 0, errors
    keys = [p["headers"]["X-Watchloop-Idempotency-Key"] for p in receiver.posts]
    assert len(keys) == len(set(keys)) == 4
    assert Counter(p["body"]["watchloop"]["status"] for p in receiver.posts) == {
        "firing": 2, "resolved": 2}
