"""Kafka and Redis-stream sources through the collector runner, into a real store.

The claims: every record lands exactly once; bad records are dead-lettered with a reason; and
the source is acknowledged only after the store accepted a batch, so neither a store outage
nor a kill -9 of the collector loses a record.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.kafka_source import KafkaSource, KafkaSourceSettings
from collectors.redis_source import RedisStreamSettings, RedisStreamSource
from collectors.runner import RunnerSettings
from telemetry import StoreError, TelemetryWriter
from tests.helpers import read_store, running_collector, wait_until
from watchloop.services.base import free_port


def _log(key: str, **overrides) -> dict:
    return {"request_id": key, "model": "fraud", "version": "1", "event_time": time.time(),
            "latency_ms": 2.5, "features": {"amount": 3.0}, "prediction": 0.5, **overrides}


# -- transports ----------------------------------------------------------------------------

class KafkaTransport:
    partitions = 3

    def __init__(self, broker) -> None:
        from kafka import KafkaAdminClient, KafkaProducer

        self.bootstrap = broker.bootstrap_servers
        self.topic = f"logs-{uuid.uuid4().hex[:8]}"
        self.label_topic = f"labels-{uuid.uuid4().hex[:8]}"
        self.group = f"g-{uuid.uuid4().hex[:8]}"
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        admin.create_topics({self.topic: {"num_partitions": self.partitions,
                                          "replication_factor": 1},
                             self.label_topic: {"num_partitions": 1, "replication_factor": 1}})
        admin.close()
        self.producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        self.sent: dict[int, int] = dict.fromkeys(range(self.partitions), 0)

    def settings(self) -> dict:
        return {"type": "kafka", "name": "kafka", "bootstrap_servers": self.bootstrap,
                "group_id": self.group, "log_topics": [self.topic],
                "label_topics": [self.label_topic], "session_timeout_ms": 6000}

    def source(self) -> KafkaSource:
        return KafkaSource(KafkaSourceSettings(**self.settings()))

    def send(self, payload: bytes, kind: str = "log", key: int = 0) -> str:
        """Send one message; return the position it will be acknowledged at."""
        if kind == "label":
            self.producer.send(self.label_topic, payload, partition=0)
            return "label"
        partition = key % self.partitions
        self.producer.send(self.topic, payload, partition=partition)
        self.sent[partition] += 1
        return f"{partition}"

    def flush(self) -> None:
        self.producer.flush()

    def acknowledged(self) -> int:
        """How many log messages the group has committed, over all partitions."""
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            offsets = admin.list_group_offsets(self.group).get(self.group, {})
        finally:
            admin.close()
        return sum(meta.offset for tp, meta in offsets.items()
                   if tp.topic == self.topic and meta.offset > 0)

    def close(self) -> None:
        self.producer.close()


class RedisTransport:
    def __init__(self, server) -> None:
        import redis

        self.url = server.url
        self.client = redis.Redis.from_url(self.url)
        suffix = uuid.uuid4().hex[:8]
        self.stream, self.label_stream = f"logs:{suffix}", f"labels:{suffix}"
        self.group = "watchloop"

    def settings(self) -> dict:
        return {"type": "redis-stream", "name": "redis", "url": self.url,
                "log_stream": self.stream, "label_stream": self.label_stream,
                "group": self.group, "consumer": "collector-1", "claim_idle_ms": 1000}

    def source(self) -> RedisStreamSource:
        return RedisStreamSource(RedisStreamSettings(**self.settings()))

    def send(self, payload: bytes, kind: str = "log", key: int = 0) -> str:
        stream = self.label_stream if kind == "label" else self.stream
        return self.client.xadd(stream, {"data": payload})

    def flush(self) -> None:
        pass

    def acknowledged(self) -> int:
        """Log entries delivered to the group and acknowledged."""
        groups = {g["name"].decode(): g for g in self.client.xinfo_groups(self.stream)}
        group = groups.get(self.group)
        if group is None:
            return 0
        return int(group["entries-read"] or 0) - int(group["pending"])

    def close(self) -> None:
        self.client.close()


@pytest.fixture(params=["kafka", "redis"])
def transport(request) -> Iterator:
    if request.param == "kafka":
        made = KafkaTransport(request.getfixturevalue("kafka_broker"))
    else:
        made = RedisTransport(request.getfixturevalue("redis_server"))
    yield made
    made.close()


class FlakyStore:
    """The real store, with an outage switch: while on, every write raises StoreError."""

    def __init__(self, store) -> None:
        self._store = store
        self.down = False

    def __getattr__(self, name: str):
        attribute = getattr(self._store, name)
        if name == "ping":
            return lambda: not self.down and attribute()
        if name in ("insert", "insert_columns", "raw_insert", "query", "command") \
                and callable(attribute):
            def guarded(*args, **kwargs):
                if self.down:
                    raise StoreError("injected outage: the store is down")
                return attribute(*args, **kwargs)
            return guarded
        return attribute


def _count(store, sql: str = "SELECT count() FROM inference_logs FINAL") -> int:
    return store.scalar(sql)


# -- in-process ----------------------------------------------------------------------------

def test_records_land_once_and_bad_ones_are_dead_lettered_with_reasons(transport, store):
    good = 300
    for i in range(good):
        transport.send(json.dumps(_log(f"r{i}")).encode(), key=i)
    batch = [_log(f"m{i}") for i in range(20)]  # several records in one message
    transport.send(json.dumps(batch).encode(), key=1)
    transport.send(b"\n".join(json.dumps(_log(f"l{i}")).encode() for i in range(5)), key=2)
    transport.send(b"{not json", key=0)
    transport.send(json.dumps(_log("nan", latency_ms="NaN")).encode(), key=0)
    transport.send(json.dumps(_log("no-version", version=None)).encode(), key=0)
    transport.send(json.dumps({"request_id": "r1", "label": 1,
                               "label_time": time.time()}).encode(), kind="label")
    transport.send(json.dumps(_log("r0")).encode(), key=0)  # a producer retry: a duplicate
    transport.flush()

    with running_collector(store, transport.source()) as runner:
        wait_until(lambda: store.scalar("SELECT count() FROM dead_letters") == 3)
        wait_until(lambda: _count(store) == good + 25)
        wait_until(lambda: store.scalar("SELECT count() FROM labels") == 1)
    assert store.scalar("SELECT count() FROM inference_logs") == good + 25  # raw, not FINAL
    reasons = sorted(r for (r,) in store.query("SELECT reason FROM dead_letters"))
    assert reasons[0].startswith("latency_ms:") or "invalid JSON" in reasons[0]
    assert any("invalid JSON" in r for r in reasons)
    assert any(r.startswith("version:") for r in reasons)
    health = {h.collector: h for h in runner.health.snapshot()}[transport.source().name]
    assert (health.dead_letters, health.duplicates) == (3, 1)
    assert health.rows_out == good + 25 + 1
    assert store.scalar("SELECT max(rows_out) FROM collector_health") == good + 26


def test_a_store_outage_loses_nothing_and_acknowledges_nothing_until_it_recovers(
        transport, store):
    flaky = FlakyStore(store)
    flaky.down = True
    with running_collector(flaky, transport.source()) as runner:
        for i in range(200):
            transport.send(json.dumps(_log(f"o{i}")).encode(), key=i)
        transport.flush()
        wait_until(lambda: any(h.store_retries >= 3 for h in runner.health.snapshot()))
        assert transport.acknowledged() == 0
        assert _count(store) == 0
        flaky.down = False
        wait_until(lambda: _count(store) == 200)
        wait_until(lambda: transport.acknowledged() == 200)
    assert store.scalar("SELECT uniqExact(request_id) FROM inference_logs") == 200


# -- a real collector process, killed with SIGKILL mid-stream -------------------------------

def _start_collector(tmp_path: Path, transport) -> subprocess.Popen:
    config = {
        "data_dir": str(tmp_path / "data"),
        "api": {"port": free_port()},
        "console": {"enabled": False},
        "collectors": {"runner": {"batch_size": 200, "flush_interval_s": 0.1},
                       "sources": [transport.settings()]},
    }
    path = tmp_path / "watchloop.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return subprocess.Popen([sys.executable, "-m", "watchloop.cli", "-c", str(path), "up"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _bad(i: int) -> bytes:
    """A bad record of one of three kinds; its request id names it."""
    kinds = (b'{"request_id": "bad-%d", "features": {"a": [1, 2' % i,  # truncated
             b'{"request_id": "bad-%d", "model": "fraud' % i,  # an open string
             json.dumps(_log(f"bad-{i}", latency_ms="slow")).encode())  # a wrong type
    return kinds[i % 3]


def test_kill_9_mid_stream_then_restart_stores_every_record_exactly_once(transport, tmp_path):
    total = 3000
    bad = {i: _bad(i) for i in range(0, total, 37)}  # truncated JSON among the good
    url = f"chdb://{tmp_path / 'data' / 'store'}?database=watchloop"

    def send(i: int) -> None:
        transport.send(bad.get(i) or json.dumps(_log(f"k{i}")).encode(), key=i)

    collector = _start_collector(tmp_path, transport)
    try:
        for i in range(total // 2):
            send(i)
        transport.flush()
        wait_until(lambda: transport.acknowledged() > 0, timeout=90)
        for i in range(total // 2, total):
            send(i)
            if i == total // 2 + 200:
                collector.send_signal(signal.SIGKILL)
        transport.flush()
        collector.communicate(timeout=30)
        acknowledged = transport.acknowledged()
        stored_at_kill = read_store(url, "SELECT uniqExact(request_id) FROM inference_logs")[0][0]
        # Nothing is acknowledged before it is stored (or dead-lettered).
        assert 0 < acknowledged <= stored_at_kill + len(bad) and stored_at_kill < total
    finally:
        if collector.poll() is None:
            collector.kill()
            collector.communicate(timeout=30)
    restarted = _start_collector(tmp_path, transport)
    try:
        wait_until(lambda: transport.acknowledged() == total, timeout=240, every=1)
    finally:
        restarted.send_signal(signal.SIGTERM)
        _, err = restarted.communicate(timeout=60)
    assert restarted.returncode == 0, err[-3000:]
    good = total - len(bad)
    count, distinct, final = read_store(
        url, "SELECT count(), uniqExact(request_id), "
             "(SELECT count() FROM inference_logs FINAL) FROM inference_logs")[0]
    assert (distinct, final) == (good, good)
    assert count == good  # the writer dropped the redelivered ones before inserting
    payloads = [p for (p,) in read_store(url, "SELECT payload FROM dead_letters")]
    assert sorted(payloads) == sorted(p.decode() for p in bad.values())  # each once, no good


def test_a_batch_holds_at_most_batch_size_records(transport, store):
    class CountingWriter(TelemetryWriter):
        """The real writer, remembering how many records each batch held."""

        sizes: list[int] = []

        def write_logs(self, records, source):
            self.sizes.append(len(records))
            return super().write_logs(records, source)

    for m in range(10):  # 100 records in each message or entry
        transport.send(json.dumps([_log(f"b{m}-{i}") for i in range(100)]).encode(), key=m)
    transport.flush()
    writer = CountingWriter(store)
    settings = RunnerSettings(batch_size=64, flush_interval_s=0.1, health_interval_s=0.5)
    with running_collector(store, transport.source(), writer=writer, settings=settings):
        wait_until(lambda: _count(store) == 1000)
        wait_until(lambda: transport.acknowledged() == 10)
    assert max(writer.sizes) <= 64
    assert sum(writer.sizes) == 1000  # nothing read twice along the way
    assert store.scalar("SELECT count() FROM inference_logs") == 1000


def test_redis_pending_entries_are_read_once_after_a_restart(redis_server, store):
    transport = RedisTransport(redis_server)
    client = transport.client
    client.xgroup_create(transport.stream, transport.group, id="0", mkstream=True)
    bad = {i: _bad(i) for i in range(0, 300, 30)}
    for i in range(300):
        transport.send(bad.get(i) or json.dumps(_log(f"p{i}")).encode())
    # A collector read everything and died before storing: all 300 are its pending entries.
    client.xreadgroup(transport.group, "collector-1", {transport.stream: ">"}, count=1000)
    settings = RunnerSettings(batch_size=5000, flush_interval_s=1.0, poll_timeout_s=0.05)
    try:
        with running_collector(store, transport.source(), settings=settings) as runner:
            wait_until(lambda: transport.acknowledged() == 300)
    finally:
        transport.close()
    health = runner.health.snapshot()[0]
    assert health.duplicates == 0 and health.rows_in == 300
    assert store.scalar("SELECT count() FROM inference_logs") == 290
    assert store.scalar("SELECT count() FROM dead_letters") == len(bad)


def test_a_redelivered_bad_record_is_dead_lettered_once(store):
    writer = TelemetryWriter(store)
    batch = [_bad(0), _bad(1), json.dumps(_log("ok")).encode()]
    first, again = writer.write_logs(batch, "kafka"), writer.write_logs(batch, "kafka")
    assert (first.rejected, again.rejected, again.duplicates) == (2, 2, 1)
    assert store.scalar("SELECT count() FROM dead_letters") == 2


def test_a_bug_while_storing_a_batch_does_not_end_the_source(transport, store):
    class BreaksOnce(TelemetryWriter):
        """The real writer, whose first batch fails as a bug in it would."""

        broken = True

        def write_logs(self, records, source):
            if self.broken:
                self.broken = False
                raise ValueError("injected: a bug in the writer")
            return super().write_logs(records, source)

    for i in range(20):
        transport.send(json.dumps(_log(f"v{i}")).encode(), key=i)
    transport.flush()
    with running_collector(store, transport.source(), writer=BreaksOnce(store)) as runner:
        wait_until(lambda: _count(store) == 20)
        wait_until(lambda: transport.acknowledged() == 20)
    assert runner.health.snapshot()[0].store_retries == 1  # retried, then stored


def test_an_unreachable_broker_is_reported_with_its_address_and_retried(store):
    port = free_port()
    source = KafkaSource(KafkaSourceSettings(bootstrap_servers=f"127.0.0.1:{port}",
                                             log_topics=["logs"], bootstrap_timeout_ms=500))
    with running_collector(store, source) as runner:
        health = wait_until(lambda: [h for h in runner.health.snapshot() if h.last_error])
    assert f"127.0.0.1:{port}" in health[0].last_error
    assert health[0].rows_out == 0


def test_refused_credentials_are_reported_as_such_not_as_unreachable(redis_server):
    from collectors.base import CollectorAuthenticationError, CollectorUnavailableError

    source = RedisStreamSource(RedisStreamSettings(
        url=f"redis://nobody:wrong@{redis_server.address}/0"))
    with pytest.raises(CollectorAuthenticationError) as caught:
        source.poll(10, 0.1)
    message = str(caught.value)
    assert f"Redis at {redis_server.address} refused the credentials" in message
    assert "cannot reach" not in message and "wrong" not in message
    source.close()
    away = RedisStreamSource(RedisStreamSettings(url=f"redis://127.0.0.1:{free_port()}/0"))
    with pytest.raises(CollectorUnavailableError, match="cannot reach Redis"):
        away.poll(10, 0.1)
    away.close()


def test_a_missing_extra_names_what_to_install(monkeypatch):
    from telemetry.extras import MissingExtraError, require

    monkeypatch.setitem(sys.modules, "redis", None)  # as if redis were not installed
    with pytest.raises(MissingExtraError,
                       match=r"the Redis stream source needs redis, which is not installed: "
                             r"pip install 'watchloop\[collectors\]'"):
        RedisStreamSource(RedisStreamSettings()).poll(10, 0.1)
    with pytest.raises(ModuleNotFoundError) as other:
        require("no_such_module_of_ours", "nothing")
    assert not isinstance(other.value, MissingExtraError)


def test_a_failed_offset_commit_is_retried_even_when_no_new_records_arrive(kafka_broker, store):
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    class CommitFailsOnce(KafkaConsumer):
        """The real client, whose first commit fails as during a coordinator move."""

        failures = 1

        def commit(self, offsets=None, timeout_ms=None):
            if CommitFailsOnce.failures:
                CommitFailsOnce.failures -= 1
                raise KafkaError("injected: the group coordinator moved")
            return super().commit(offsets, timeout_ms)

    transport = KafkaTransport(kafka_broker)
    try:
        for i in range(50):
            transport.send(json.dumps(_log(f"c{i}")).encode(), key=i)
        transport.flush()
        source = KafkaSource(KafkaSourceSettings(**transport.settings()),
                             consumer_factory=CommitFailsOnce)
        with running_collector(store, source):
            wait_until(lambda: _count(store) == 50)
            wait_until(lambda: transport.acknowledged() == 50)
        assert CommitFailsOnce.failures == 0
    finally:
        transport.close()


def test_a_failed_xack_is_retried_even_when_no_new_entries_arrive(redis_server, store):
    import redis

    class AckFailsOnce(redis.Redis):
        """The real client, whose first XACK pipeline fails as on a dropped connection."""

        failures = 1

        def pipeline(self, *args, **kwargs):
            pipe = super().pipeline(*args, **kwargs)
            if AckFailsOnce.failures:
                AckFailsOnce.failures -= 1

                def reset(*_args, **_kwargs):
                    raise redis.ConnectionError("injected: connection reset by peer")

                pipe.execute = reset
            return pipe

    transport = RedisTransport(redis_server)
    try:
        for i in range(50):
            transport.send(json.dumps(_log(f"x{i}")).encode())
        source = RedisStreamSource(RedisStreamSettings(**transport.settings()),
                                   client_factory=lambda: AckFailsOnce.from_url(transport.url))
        with running_collector(store, source):
            wait_until(lambda: _count(store) == 50)
            wait_until(lambda: transport.acknowledged() == 50)
        assert AckFailsOnce.failures == 0
    finally:
        transport.close()


def test_redis_entries_without_the_data_field_are_dead_lettered_and_acknowledged(
        redis_server, store):
    transport = RedisTransport(redis_server)
    try:
        for i in range(3):
            transport.send(json.dumps(_log(f"d{i}")).encode())
        for i in range(2):
            transport.client.xadd(transport.stream, {"body": json.dumps(_log(f"w{i}"))})
        with running_collector(store, transport.source()):
            wait_until(lambda: _count(store) == 3)
            wait_until(lambda: transport.acknowledged() == 5)
        reasons = [r for (r,) in store.query("SELECT reason FROM dead_letters")]
        assert len(reasons) == 2
        assert all("has no 'data' field" in r for r in reasons)
        assert store.scalar("SELECT uniqExact(kind) FROM dead_letters") == 1
    finally:
        transport.close()
