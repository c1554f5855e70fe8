"""Inference logs and labels from Kafka topics, through a consumer group.

Offsets are committed only after the store accepted the records (the runner calls
``acknowledge``), so a crash re-delivers at most the uncommitted tail, which the writer
recognises as duplicates. Scale out by running more collectors with the same ``group_id``:
Kafka spreads the partitions among them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from telemetry.boundary import translate, translated
from telemetry.extras import require
from telemetry.problems import raise_at

from .base import COLLECTOR_ERRORS, CollectorError, SourceBatch, SourceRecord
from .payloads import split_message

log = logging.getLogger("watchloop.collectors.kafka")


class KafkaSourceSettings(BaseModel):
    """A Kafka consumer group reading inference-log and label topics."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["kafka"] = "kafka"
    name: str = Field("kafka", min_length=1)
    bootstrap_servers: str = Field(min_length=1, description="host:port[,host:port...]")
    group_id: str = Field("watchloop", min_length=1)
    log_topics: list[str] = Field(default_factory=list)
    label_topics: list[str] = Field(default_factory=list)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    # After a kill -9 the broker waits about this long for the dead member before the
    # restarted collector gets its partitions (measured on Tansu: 18 s at 10 s, 11 s at 6 s,
    # 7 s at 3 s). 6 s is the lowest a Kafka broker accepts by default
    # (group.min.session.timeout.ms).
    session_timeout_ms: int = Field(6_000, ge=1_000)
    # Static membership (KIP-345): a restarted collector with the same id takes its
    # partitions back without a rebalance, on brokers that support it (Apache Kafka 2.3+;
    # Tansu 0.x does not speed up with it). Unique per collector process.
    group_instance_id: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,249}$")
    max_poll_interval_ms: int = Field(300_000, gt=0)
    # How long the broker may hold a fetch: bounds freshness. kafka-python requires it to be
    # below its request timeout (30 s).
    fetch_max_wait_ms: int = Field(100, ge=0, lt=30_000)
    max_partition_fetch_bytes: int = Field(8 * 1024 * 1024, gt=0)
    bootstrap_timeout_ms: int = Field(5_000, gt=0)  # per attempt; the runner retries
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    password: SecretStr | None = None

    @field_validator("group_instance_id")
    @classmethod
    def _legal_instance_id(cls, value: str | None) -> str | None:
        if value in (".", ".."):
            raise ValueError("cannot be '.' or '..'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSourceSettings:
        problems = []
        if not self.log_topics and not self.label_topics:
            problems.append((("log_topics",), "give log_topics and/or label_topics", []))
        for topic in sorted(set(self.log_topics) & set(self.label_topics)):
            problems.append((("label_topics",), f"topic {topic!r} is also in log_topics; a "
                             "topic holds one kind of record", topic))
        sasl = self.security_protocol.startswith("SASL")
        if sasl and self.sasl_mechanism is None:
            problems.append((("sasl_mechanism",), f"security_protocol {self.security_protocol}"
                             " needs a sasl_mechanism", None))
        if sasl and not self.sasl_username:
            problems.append((("sasl_username",), "SASL needs a user name", None))
        if self.sasl_mechanism is not None and not sasl:
            problems.append((("sasl_mechanism",), "applies only with security_protocol "
                             "SASL_PLAINTEXT or SASL_SSL", self.sasl_mechanism))
        raise_at(type(self).__name__, problems)
        return self

    @property
    def collector_name(self) -> str:
        """The name its health rows and metrics carry."""
        return self.name


class KafkaSource:
    """A ``RecordSource`` over a kafka-python consumer in a group."""

    def __init__(
        self,
        settings: KafkaSourceSettings,
        consumer_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self._kinds = {t: "log" for t in settings.log_topics}
        self._kinds.update({t: "label" for t in settings.label_topics})
        self._consumer_factory = consumer_factory
        self._consumer: Any = None
        self._records_per_message = 1.0  # running average; messages may carry many records
        self._uncommitted: dict[Any, int] = {}  # stored but not yet committed, per partition
        self._held: list[SourceRecord] = []  # fetched beyond the batch; delivered next

    def _connect(self) -> Any:
        if self._consumer is not None:
            return self._consumer
        KafkaConsumer = require("kafka", "the Kafka source").KafkaConsumer  # noqa: N806

        s = self.settings
        options: dict[str, Any] = {
            "bootstrap_servers": s.bootstrap_servers,
            "group_id": s.group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": s.auto_offset_reset,
            "session_timeout_ms": s.session_timeout_ms,
            "heartbeat_interval_ms": max(100, s.session_timeout_ms // 3),
            "max_poll_interval_ms": s.max_poll_interval_ms,
            "fetch_max_wait_ms": s.fetch_max_wait_ms,
            "max_partition_fetch_bytes": s.max_partition_fetch_bytes,
            "bootstrap_timeout_ms": s.bootstrap_timeout_ms,
            "security_protocol": s.security_protocol,
            "client_id": f"watchloop-{s.name}",
        }
        if s.group_instance_id:
            options["group_instance_id"] = s.group_instance_id
        if s.sasl_mechanism:
            options.update(sasl_mechanism=s.sasl_mechanism, sasl_plain_username=s.sasl_username,
                           sasl_plain_password=s.password.get_secret_value() if s.password
                           else None)
        with translated("Kafka", s.bootstrap_servers, COLLECTOR_ERRORS):
            consumer = (self._consumer_factory or KafkaConsumer)(**options)
            consumer.subscribe(list(self._kinds))
        self._consumer = consumer
        return consumer

    def poll(self, max_records: int, timeout_s: float) -> SourceBatch:
        """At most ``max_records`` records. A message may carry several, so the number of
        messages asked for follows the average seen so far, and records fetched beyond the
        batch are held for the next poll (their message is not committed until all of its
        records are stored)."""
        from kafka.errors import KafkaError

        consumer = self._connect()
        if self._uncommitted:
            try:
                self._commit_pending()
            except CollectorError as exc:
                log.warning("%s: %s", self.name, exc)
        if len(self._held) < max_records:
            messages = max(1, int((max_records - len(self._held)) / self._records_per_message))
            try:
                fetched = consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=messages)
            except KafkaError as exc:
                raise translate(exc, "Kafka", self.settings.bootstrap_servers,
                                COLLECTOR_ERRORS, "polling") from exc
            self._hold(fetched)
        records, self._held = self._held[:max_records], self._held[max_records:]
        return SourceBatch(records, lag=self._lag(consumer) if records else None)

    def _hold(self, fetched: dict) -> None:
        before, messages_seen = len(self._held), 0
        for partition, messages in fetched.items():
            kind = self._kinds.get(partition.topic, "log")
            for message in messages:
                payloads = split_message(message.value)
                for i, payload in enumerate(payloads):
                    # The position says whether this is the last record of its message: only
                    # then may the message's offset be passed.
                    position = (partition, message.offset, i == len(payloads) - 1)
                    self._held.append(SourceRecord(kind, payload, position))
                messages_seen += 1
        if messages_seen:
            per_message = (len(self._held) - before) / messages_seen
            self._records_per_message = 0.8 * self._records_per_message + 0.2 * per_message

    def acknowledge(self, records: Sequence[SourceRecord]) -> None:
        """Commit, per partition, the offset after the last message whose records are all
        stored.

        A commit that fails (a rebalance in progress, a broker away) is kept and tried again
        on the next poll, so a quiet topic does not keep a stale committed offset.
        """
        for record in records:
            partition, offset, last = record.position
            following = offset + 1 if last else offset
            self._uncommitted[partition] = max(self._uncommitted.get(partition, -1), following)
        self._commit_pending()

    def _commit_pending(self) -> None:
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata

        if not self._uncommitted:
            return
        consumer = self._connect()
        # Partitions moved to another member are theirs to commit now.
        assigned = consumer.assignment()
        pending = {tp: o for tp, o in self._uncommitted.items() if tp in assigned}
        self._uncommitted = pending
        if not pending:
            return
        try:
            consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in pending.items()})
        except KafkaError as exc:
            raise translate(exc, "Kafka", self.settings.bootstrap_servers, COLLECTOR_ERRORS,
                            "committing offsets (will retry)") from exc
        self._uncommitted = {}

    def _lag(self, consumer: Any) -> float | None:
        total = 0
        for partition in consumer.assignment():
            highwater = consumer.highwater(partition)
            position = consumer.position(partition)
            if highwater is None or position is None:
                return None
            total += max(0, highwater - position)
        return float(total)

    def close(self) -> None:
        """Leave the group without committing anything not yet stored."""
        self._held = []
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
            self._consumer = None
