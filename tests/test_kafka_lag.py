"""Kafka lag against a real Tansu broker: every expected number is one this test produced or
committed itself, never one read back from the broker's ListOffsets (wrong on Tansu)."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
from pydantic import ValidationError

from collectors.base import CollectorError, MetricPoller
from collectors.kafka_lag import (
    COLUMNS,
    KafkaLagPoller,
    KafkaLagSettings,
    PartitionLag,
    estimate_record_age,
)
from telemetry import Store
from telemetry.clock import from_epoch_ms
from watchloop.services import KafkaBroker, free_port

kafka = pytest.importorskip("kafka")
from kafka.structs import OffsetAndMetadata, TopicPartition  # noqa: E402

pytestmark = pytest.mark.services

# Record i of a partition is stamped BASE_MS + i seconds. A day ago, not a fixed date: the
# kafka_lag table's 30-day TTL drops rows with older ``ts`` (at a background merge).
BASE_MS = (int(time.time()) - 86_400) * 1000


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return from_epoch_ms(round(self.now * 1000))


@pytest.fixture
def prefix() -> str:
    """A name prefix of this test's own, for topics and groups on the shared broker."""
    return f"lag-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def admin(kafka_broker: KafkaBroker) -> Iterator[kafka.KafkaAdminClient]:
    client = kafka.KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap_servers)
    try:
        yield client
    finally:
        client.close()


def make_topic(admin: kafka.KafkaAdminClient, name: str, partitions: int = 3) -> None:
    admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1}})


def produce(broker: KafkaBroker, topic: str, counts: list[int]) -> None:
    """Send ``counts[p]`` records to partition ``p``, stamped BASE_MS + i seconds.

    linger_ms batches many records per request: exactly the case where Tansu's ListOffsets
    LATEST is wrong, so the poller must read log ends another way.
    """
    producer = kafka.KafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=20)
    try:
        for partition, count in enumerate(counts):
            for i in range(count):
                producer.send(
                    topic, b"x" * 50, partition=partition, timestamp_ms=BASE_MS + i * 1000
                )
        producer.flush()
    finally:
        producer.close()


def commit(broker: KafkaBroker, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit ``{partition: offset}`` for ``group`` without joining it (instant on Tansu)."""
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=broker.bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    try:
        consumer.commit(
            {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()}
        )
    finally:
        consumer.close()


def poller_for(broker: KafkaBroker, prefix: str, clock: Clock, **overrides) -> KafkaLagPoller:
    settings = KafkaLagSettings(
        bootstrap_servers=broker.bootstrap_servers,
        cluster="test",
        groups_include=[f"{prefix}-.*"],
        **overrides,
    )
    return KafkaLagPoller(settings, clock=clock)


def by_key(rows: list[PartitionLag]) -> dict[tuple[str, int], PartitionLag]:
    return {(row.group, row.partition): row for row in rows}


def test_lag_per_partition_is_what_was_produced_minus_what_was_committed(
    kafka_broker: KafkaBroker, admin: kafka.KafkaAdminClient, prefix: str, store: Store
) -> None:
    topic, fast, slow = f"{prefix}-events", f"{prefix}-fast", f"{prefix}-slow"
    produced = [12, 7, 30]
    committed = {fast: {0: 12, 1: 6, 2: 25}, slow: {0: 3, 1: 0, 2: 10}}
    make_topic(admin, topic)
    produce(kafka_broker, topic, produced)
    for group, offsets in committed.items():
        commit(kafka_broker, group, topic, offsets)
    now = BASE_MS / 1000 + 3_600
    poller = poller_for(kafka_broker, prefix, Clock(now))
    try:
        assert isinstance(poller, MetricPoller)
        [batch] = poller.collect()
    finally:
        poller.close()

    assert batch.table == "kafka_lag" and len(batch) == 6
    rows = [
        dict(zip(batch.columns, values, strict=True))
        for values in zip(*batch.columns.values(), strict=True)
    ]
    for row in rows:
        group, partition = row["consumer_group"], row["partition"]
        expected_lag = produced[partition] - committed[group][partition]
        assert row["topic"] == topic and row["cluster"] == "test"
        assert row["committed_offset"] == committed[group][partition]
        assert row["log_end_offset"] == produced[partition]
        assert row["lag_messages"] == expected_lag
        # the oldest unconsumed record is the one at the committed offset
        expected_age = (
            0.0 if expected_lag == 0 else now - (BASE_MS / 1000 + row["committed_offset"])
        )
        assert row["lag_seconds"] == pytest.approx(expected_age)
        assert row["status"] == "OK"
        assert row["ts"] == int(now * 1000) and row["ingest_time"] == int(now * 1000)

    # the columns are the table's: the rows go in as they are and read back the same
    store.insert_columns(batch.table, batch.columns)
    stored = store.query(
        "SELECT consumer_group, partition, lag_messages FROM kafka_lag ORDER BY 1, 2"
    )
    assert stored == sorted(
        (g, p, produced[p] - o) for g, offsets in committed.items() for p, o in offsets.items()
    )


def test_a_commit_past_the_log_end_never_shows_as_negative_lag(
    kafka_broker: KafkaBroker, admin: kafka.KafkaAdminClient, prefix: str
) -> None:
    topic, group = f"{prefix}-events", f"{prefix}-ahead"
    make_topic(admin, topic, partitions=1)
    produce(kafka_broker, topic, [5])
    commit(kafka_broker, group, topic, {0: 9})
    poller = poller_for(kafka_broker, prefix, Clock(BASE_MS / 1000 + 60))
    try:
        [row] = poller.scan()
    finally:
        poller.close()
    assert (row.committed_offset, row.log_end_offset, row.lag_messages) == (9, 9, 0)
    assert row.lag_seconds == 0.0
    assert "committed offset 9 is past the log end 5" in row.reason


def test_record_ages_are_right_when_committed_offsets_are_far_apart(
    kafka_broker: KafkaBroker, admin: kafka.KafkaAdminClient, prefix: str
) -> None:
    """Offsets hundreds of records apart in one partition: the scan seeks between them."""
    topic = f"{prefix}-events"
    make_topic(admin, topic, partitions=1)
    produce(kafka_broker, topic, [600])
    positions = {f"{prefix}-a": 3, f"{prefix}-b": 4, f"{prefix}-c": 350, f"{prefix}-d": 599}
    for group, offset in positions.items():
        commit(kafka_broker, group, topic, {0: offset})
    now = BASE_MS / 1000 + 1_000
    poller = poller_for(kafka_broker, prefix, Clock(now))
    try:
        rows = poller.scan()
    finally:
        poller.close()
    assert {row.group: row.lag_messages for row in rows} == {
        group: 600 - offset for group, offset in positions.items()
    }
    assert {row.group: row.lag_seconds for row in rows} == {
        group: pytest.approx(now - (BASE_MS / 1000 + offset)) for group, offset in positions.items()
    }


def test_include_and_exclude_patterns_pick_the_groups(
    kafka_broker: KafkaBroker, admin: kafka.KafkaAdminClient, prefix: str
) -> None:
    topic = f"{prefix}-events"
    make_topic(admin, topic, partitions=1)
    produce(kafka_broker, topic, [4])
    for group in ("orders-1", "orders-2", "orders-canary", "billing"):
        commit(kafka_broker, f"{prefix}-{group}", topic, {0: 1})
    settings = KafkaLagSettings(
        bootstrap_servers=kafka_broker.bootstrap_servers,
        groups_include=[f"{prefix}-orders-.*", f"{prefix}-billing"],
        groups_exclude=[".*-canary"],
    )
    poller = KafkaLagPoller(settings)
    try:
        groups = {row.group for row in poller.scan()}
    finally:
        poller.close()
    assert groups == {f"{prefix}-orders-1", f"{prefix}-orders-2", f"{prefix}-billing"}


def test_a_rewound_group_is_stored_as_rewind_with_its_reason(
    kafka_broker: KafkaBroker, admin: kafka.KafkaAdminClient, prefix: str
) -> None:
    topic, group = f"{prefix}-events", f"{prefix}-replay"
    make_topic(admin, topic, partitions=1)
    produce(kafka_broker, topic, [20])
    clock = Clock(BASE_MS / 1000 + 100)
    poller = poller_for(kafka_broker, prefix, clock)
    try:
        commit(kafka_broker, group, topic, {0: 15})
        [first] = poller.scan()
        commit(kafka_broker, group, topic, {0: 4})
        clock.now += 30
        [batch] = poller.collect()
    finally:
        poller.close()
    assert first.status == "OK"
    assert batch.columns["status"] == ["REWIND"]
    assert batch.columns["lag_messages"] == [16]
    assert batch.columns["reason"] == [
        "REWIND: committed offset went back from 15 to 4 (0s ago); lag now 16"
    ]


def test_a_group_whose_offset_stands_still_with_lag_goes_stall_then_stop(
    kafka_broker: KafkaBroker, admin: kafka.KafkaAdminClient, prefix: str
) -> None:
    topic, group = f"{prefix}-events", f"{prefix}-stuck"
    make_topic(admin, topic, partitions=1)
    produce(kafka_broker, topic, [10])
    commit(kafka_broker, group, topic, {0: 2})
    clock = Clock(BASE_MS / 1000 + 100)
    poller = poller_for(kafka_broker, prefix, clock, window=3, stop_after_s=120)
    statuses = []
    try:
        for _ in range(5):
            [row] = poller.scan()
            statuses.append(row.status)
            clock.now += 30
    finally:
        poller.close()
    # Tansu reports every group's state as "Unknown", so STOP comes from stop_after_s
    assert statuses == ["OK", "OK", "STALL", "STALL", "STOP"]


def test_interpolated_lag_seconds_come_from_the_log_end_history(
    kafka_broker: KafkaBroker, admin: kafka.KafkaAdminClient, prefix: str
) -> None:
    topic, group = f"{prefix}-events", f"{prefix}-late"
    make_topic(admin, topic, partitions=1)
    produce(kafka_broker, topic, [10])
    commit(kafka_broker, group, topic, {0: 5})
    clock = Clock(1_000.0)
    poller = poller_for(kafka_broker, prefix, clock, lag_seconds="interpolate")
    try:
        [first] = poller.scan()  # no history yet: unknown, and said so
        produce(kafka_broker, topic, [10])
        clock.now = 1_010.0  # 10 records in 10 s: one per second
        [second] = poller.scan()
    finally:
        poller.close()
    assert math.isnan(first.lag_seconds) and "lag_seconds unknown" in first.reason
    assert second.log_end_offset == 20
    # record 5 was appended 4 records (4 s at 1/s) before the log end reached 10 at t=1000
    assert second.lag_seconds == pytest.approx(14.0)
    assert "interpolated" in second.reason


def test_an_unreachable_broker_is_a_collector_error_naming_its_address() -> None:
    address = f"127.0.0.1:{free_port()}"
    settings = KafkaLagSettings(bootstrap_servers=address, request_timeout_s=1)
    poller = KafkaLagPoller(settings)
    with pytest.raises(CollectorError, match=address):
        poller.collect()
    poller.close()


def test_record_age_interpolates_between_samples_and_extrapolates_before_them() -> None:
    history = [(100.0, 10), (110.0, 30), (130.0, 40)]
    # offset 19 appended as the log end went 19 -> 20: halfway between t=100 and t=110
    assert estimate_record_age(history, 19, now=200.0) == pytest.approx(95.0)
    # offset 34 appended between t=110 (end 30) and t=130 (end 40): 5/10 of the way
    assert estimate_record_age(history, 34, now=200.0) == pytest.approx(80.0)
    # offset 4: before the first sample; 30 records in 30 s, so 5 s before t=100
    assert estimate_record_age(history, 4, now=200.0) == pytest.approx(105.0)
    assert estimate_record_age([(100.0, 10)], 4, now=200.0) is None
    assert estimate_record_age(history, 40, now=200.0) is None


def test_settings_refuse_unknown_keys_and_bad_patterns() -> None:
    with pytest.raises(ValidationError, match="bootstrap"):
        KafkaLagSettings(type="kafka-lag", bootstrap="localhost:9092")
    with pytest.raises(ValidationError, match="invalid regular expression"):
        KafkaLagSettings(bootstrap_servers="localhost:9092", groups_include=["orders-("])
    settings = KafkaLagSettings(bootstrap_servers="localhost:9092")
    assert settings.type == "kafka-lag" and settings.window == 10
    assert list(COLUMNS)[0] == "ts"


def test_a_broker_that_goes_away_between_scans_is_a_collector_error(tmp_path) -> None:
    broker = KafkaBroker(tmp_path).start(timeout=30)
    try:
        admin = kafka.KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        make_topic(admin, "events", partitions=1)
        admin.close()
        produce(broker, "events", [3])
        commit(broker, "gone-consumer", "events", {0: 1})
        settings = KafkaLagSettings(bootstrap_servers=broker.bootstrap_servers, request_timeout_s=1)
        poller = KafkaLagPoller(settings)
        assert [row.lag_messages for row in poller.scan()] == [2]
    finally:
        # with clients connected Tansu takes ~5 s to exit on SIGTERM; kill it like a crash
        broker.stop(timeout=0.2)
    try:
        with pytest.raises(CollectorError, match=broker.bootstrap_servers):
            poller.collect()
    finally:
        poller.close()
