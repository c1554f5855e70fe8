"""Kafka consumer lag per group, topic and partition, with a Burrow-style status.

One scan (``KafkaLagPoller.collect``):

1. ``list_groups`` and the include/exclude patterns pick the groups;
2. one ``list_group_offsets`` call reads every committed offset of those groups;
3. one consumer, assigned to every partition involved, reads the log-end offsets as the high
   watermark of a Fetch, and the timestamp of the record at each committed offset;
4. each (group, topic, partition) gets a row for table ``kafka_lag``, its status from
   ``LagStatusEvaluator`` (see ``collectors.lag_status`` for the rules).

Why a Fetch and not ListOffsets: some brokers get ListOffsets LATEST wrong. Tansu answers
with the base offset of the newest record batch + 1, not the high watermark, whenever a batch
holds several records; a Fetch's high watermark is right on every broker we know of. The
fetch starts at the lowest committed offset of each partition, so the same response carries
the record whose timestamp gives the lag in seconds.

Columns:

- ``log_end_offset`` is never below ``committed_offset``: a commit past the log end (a
  consumer that committed ahead, a truncated log) is reported with lag 0 and a note in
  ``reason``, never as a negative lag.
- ``lag_seconds`` is how old the oldest unconsumed record is: now minus the timestamp of the
  record at the committed offset (0 when the lag is 0). When that timestamp is not available
  (``lag_seconds="interpolate"``, a timestamp of -1, a partition whose records could not be
  read in time) it is estimated Burrow-style from this poller's history of (time, log-end)
  samples: the time the log end passed the committed offset, interpolated between samples
  and extrapolated at the observed rate before the first one; NaN when there is no history
  to estimate from (the reason says so).

Groups with no committed offset on a partition produce no row for it, and committed offsets
on topics that no longer exist are skipped.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from collectors.base import COLLECTOR_ERRORS, CollectorError, MetricRows
from collectors.lag_status import LagSample, LagStatusEvaluator
from telemetry.boundary import classify, translate
from telemetry.clock import Clock, epoch_ms, utc_now
from telemetry.extras import require

__all__ = [
    "KafkaLagPoller",
    "KafkaLagSettings",
    "PartitionLag",
    "estimate_record_age",
]

log = logging.getLogger(__name__)

TABLE = "kafka_lag"
COLUMNS = (
    "ts",
    "ingest_time",
    "cluster",
    "consumer_group",
    "topic",
    "partition",
    "committed_offset",
    "log_end_offset",
    "lag_messages",
    "lag_seconds",
    "status",
    "reason",
)
INSTALL_HINT = "install kafka-python with `pip install 'watchloop[collectors]'`"

# ListGroups states (KIP-518) that say whether anyone is left to commit.
_ACTIVE_STATES = frozenset(
    {"stable", "preparingrebalance", "completingrebalance", "assigning", "reconciling"}
)
_INACTIVE_STATES = frozenset({"empty", "dead"})
# Records decoded past one committed offset before seeking straight to the next one.
_SEEK_GAP = 100
_POLL_MS = 10
_HISTORY = 64


class KafkaLagSettings(BaseModel):
    """Settings of the ``kafka-lag`` poller (one Kafka cluster)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["kafka-lag"] = "kafka-lag"
    bootstrap_servers: str = Field(min_length=1, description="host:port[,host:port...]")
    cluster: str = Field("default", min_length=1, description="stored in kafka_lag.cluster")
    groups_include: list[str] = Field(
        default_factory=lambda: [".*"],
        description="regular expressions; a group is scanned if one matches its whole name",
    )
    groups_exclude: list[str] = Field(
        default_factory=list, description="regular expressions that drop a matching group"
    )
    interval_s: float = Field(30.0, gt=0, description="seconds between scans")
    window: int = Field(10, ge=2, description="samples per partition the status looks at")
    stop_after_s: float = Field(
        600.0,
        gt=0,
        description="offset standing still this long with lag is STOP when the broker "
        "does not report group liveness; keep it above window * interval_s",
    )
    lag_seconds: Literal["record-timestamp", "interpolate"] = Field(
        "record-timestamp",
        description="age of the record at the committed offset, or an estimate from "
        "the history of log-end offsets",
    )
    request_timeout_s: float = Field(10.0, gt=0, description="limit for each broker call")
    scan_timeout_s: float = Field(30.0, gt=0, description="limit for reading log ends")

    @field_validator("groups_include", "groups_exclude")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
        return patterns

    @property
    def collector_name(self) -> str:
        """The name its health rows and metrics carry."""
        return f"kafka-lag:{self.cluster}"

    def wants(self, group: str) -> bool:
        """True when ``group`` matches an include pattern and no exclude pattern."""
        return any(re.fullmatch(p, group) for p in self.groups_include) and not any(
            re.fullmatch(p, group) for p in self.groups_exclude
        )


@dataclass(frozen=True)
class PartitionLag:
    """One row of ``kafka_lag`` before it is turned into columns."""

    group: str
    topic: str
    partition: int
    committed_offset: int
    log_end_offset: int
    lag_messages: int
    lag_seconds: float
    status: str
    reason: str


class LagAdmin(Protocol):
    """The part of ``kafka.KafkaAdminClient`` (3.0.x) the poller uses."""

    def list_groups(self) -> list[dict[str, Any]]: ...
    def list_group_offsets(self, group_specs: dict[str, Any]) -> dict[str, dict[Any, Any]]: ...
    def describe_topics(self, topics: list[str] | None = None) -> list[dict[str, Any]]: ...
    def close(self) -> None: ...


class LagConsumer(Protocol):
    """The part of ``kafka.KafkaConsumer`` (3.0.x, no group) the poller uses."""

    def assign(self, partitions: list[Any]) -> None: ...
    def unsubscribe(self) -> None: ...
    def seek(self, partition: Any, offset: int) -> None: ...
    def position(self, partition: Any) -> int | None: ...
    def highwater(self, partition: Any) -> int | None: ...
    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, list]: ...
    def close(self) -> None: ...


def estimate_record_age(
    history: Sequence[tuple[float, int]], offset: int, now: float
) -> float | None:
    """Seconds since the record at ``offset`` was appended, from (time, log-end) samples.

    The record at ``offset`` was appended when the log end went from ``offset`` to
    ``offset + 1``; that moment is interpolated between the two samples around it, or
    extrapolated at the average rate of the history when it is older than the first sample.
    Returns None when the history cannot tell (no sample past the offset, or no rate).
    """
    points = sorted(history)
    later = [i for i, (_, end) in enumerate(points) if end > offset]
    if not later:
        return None
    i = later[0]
    if i > 0:
        (t0, e0), (t1, e1) = points[i - 1], points[i]
        appended = t0 + (offset + 1 - e0) / (e1 - e0) * (t1 - t0)
        return max(0.0, now - appended)
    (t_first, e_first), (t_last, e_last) = points[0], points[-1]
    if t_last <= t_first or e_last <= e_first:
        return None
    rate = (e_last - e_first) / (t_last - t_first)  # records per second
    appended = t_first - (e_first - offset - 1) / rate
    return max(0.0, now - appended)


class KafkaLagPoller:
    """Scans consumer-group lag on one Kafka cluster; a ``MetricPoller`` for ``kafka_lag``.

    Nothing connects until the first ``collect``. Tests and other clients pass
    ``admin_factory``/``consumer_factory`` (called with no arguments) and ``clock``.
    """

    def __init__(
        self,
        settings: KafkaLagSettings,
        *,
        admin_factory: Callable[[], LagAdmin] | None = None,
        consumer_factory: Callable[[], LagConsumer] | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.settings = settings
        self.name = settings.collector_name
        self.interval_s = settings.interval_s
        self._admin_factory = admin_factory or self._default_admin
        self._consumer_factory = consumer_factory or self._default_consumer
        self._clock = clock
        self._admin: LagAdmin | None = None
        self._consumer: LagConsumer | None = None
        self._evaluator = LagStatusEvaluator(
            window=settings.window, stop_after_s=settings.stop_after_s
        )
        self._history: dict[tuple[str, int], deque[tuple[float, int]]] = {}
        self._last_scan_ms = 0

    # -- MetricPoller ------------------------------------------------------------------

    def collect(self) -> list[MetricRows]:
        """Scan every selected group once and return its rows for ``kafka_lag``.

        Raises ``CollectorError`` naming the bootstrap address when the cluster cannot be read.
        """
        rows = self.scan()
        if not rows:
            return []
        ingest_ms = epoch_ms(self._clock())
        columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        ts_ms = self._last_scan_ms
        for row in rows:
            columns["ts"].append(ts_ms)
            columns["ingest_time"].append(ingest_ms)
            columns["cluster"].append(self.settings.cluster)
            columns["consumer_group"].append(row.group)
            columns["topic"].append(row.topic)
            columns["partition"].append(row.partition)
            columns["committed_offset"].append(row.committed_offset)
            columns["log_end_offset"].append(row.log_end_offset)
            columns["lag_messages"].append(row.lag_messages)
            columns["lag_seconds"].append(row.lag_seconds)
            columns["status"].append(row.status)
            columns["reason"].append(row.reason)
        return [MetricRows(TABLE, columns)]

    def close(self) -> None:
        """Close the admin client and the consumer; a later ``collect`` reconnects."""
        admin, consumer = self._admin, self._consumer
        self._admin = self._consumer = None
        for client in (consumer, admin):
            if client is not None:
                try:
                    client.close()
                except Exception:  # closing must not hide the error that led here
                    log.debug("closing a Kafka client failed", exc_info=True)

    # -- the scan ----------------------------------------------------------------------

    def scan(self) -> list[PartitionLag]:
        """Read the lag of every selected (group, topic, partition) and evaluate its status."""
        with self._translated("connect"):
            admin = self._admin = self._admin or self._admin_factory()
        self._last_scan_ms = epoch_ms(self._clock())
        now = self._last_scan_ms / 1000  # the lag rules work in Unix seconds
        with self._translated("list groups"):
            listed = admin.list_groups()
        groups = {
            g["group_id"]: _group_active(g.get("group_state"))
            for g in listed
            if self.settings.wants(g["group_id"])
        }
        if not groups:
            self._evaluator.retain(())
            return []
        with self._translated("read committed offsets"):
            fetched = admin.list_group_offsets({group: None for group in groups})
        committed: dict[str, dict[Any, int]] = {
            group: {tp: meta.offset for tp, meta in (offsets or {}).items() if meta.offset >= 0}
            for group, offsets in fetched.items()
        }
        targets: dict[Any, set[int]] = defaultdict(set)
        for offsets in committed.values():
            for tp, offset in offsets.items():
                targets[tp].add(offset)
        if not targets:
            self._evaluator.retain(())
            return []
        with self._translated("describe topics"):
            existing = self._existing_partitions(admin, {tp.topic for tp in targets})
        gone = [tp for tp in targets if (tp.topic, tp.partition) not in existing]
        for tp in gone:
            log.info("kafka %s: skipping %s, no longer in the cluster", self._address, tp)
            del targets[tp]
        with self._translated("read log-end offsets"):
            ends, stamps = self._read_partitions(targets)

        rows: list[PartitionLag] = []
        seen: list[tuple[str, str, int]] = []
        for tp, end in ends.items():
            history = self._history.setdefault((tp.topic, tp.partition), deque(maxlen=_HISTORY))
            history.append((now, end))
        for group in sorted(committed):
            for tp in sorted(committed[group]):
                if tp not in ends:
                    continue
                row = self._row(
                    group, tp, committed[group][tp], ends[tp], stamps, now, groups.get(group)
                )
                rows.append(row)
                seen.append((group, tp.topic, tp.partition))
        self._evaluator.retain(seen)
        live = {(tp.topic, tp.partition) for tp in ends}
        for key in [key for key in self._history if key not in live]:
            del self._history[key]
        return rows

    def _row(
        self,
        group: str,
        tp: Any,
        committed: int,
        end: int,
        stamps: dict[tuple[Any, int], int],
        now: float,
        active: bool | None,
    ) -> PartitionLag:
        notes: list[str] = []
        if committed > end:
            notes.append(
                f"committed offset {committed} is past the log end {end}; "
                "log end reported as the committed offset"
            )
            end = committed
        lag = end - committed
        if lag == 0:
            lag_s = 0.0
        else:
            stamp = stamps.get((tp, committed), -1)
            if stamp >= 0:
                lag_s = max(0.0, now - stamp / 1000)
            else:
                history = self._history.get((tp.topic, tp.partition), ())
                estimate = estimate_record_age(list(history), committed, now)
                if estimate is None:
                    lag_s = math.nan
                    notes.append("lag_seconds unknown: no record timestamp and no history yet")
                else:
                    lag_s = estimate
                    notes.append("lag_seconds interpolated from log-end history")
        evaluation = self._evaluator.observe(
            (group, tp.topic, tp.partition),
            LagSample(time=now, offset=committed, lag=lag, group_active=active),
        )
        reason = "; ".join([evaluation.reason, *notes])
        return PartitionLag(
            group,
            tp.topic,
            tp.partition,
            committed,
            end,
            lag,
            lag_s,
            str(evaluation.status),
            reason,
        )

    @staticmethod
    def _existing_partitions(admin: LagAdmin, topics: Iterable[str]) -> set[tuple[str, int]]:
        found: set[tuple[str, int]] = set()
        for topic in admin.describe_topics(sorted(topics)):
            if topic.get("error_code", 0) != 0:
                continue
            for partition in topic.get("partitions", ()):
                if partition.get("error_code", 0) == 0:
                    found.add((topic["name"], partition["partition_index"]))
        return found

    def _read_partitions(
        self, targets: dict[Any, set[int]]
    ) -> tuple[dict[Any, int], dict[tuple[Any, int], int]]:
        """High watermark of every partition, and record timestamps at the wanted offsets.

        Each partition starts fetching at its lowest committed offset; records are read in
        order, and a partition jumps ahead (seek) when its next wanted offset is far away.
        A partition is done once its high watermark is known and every wanted offset below
        it has a timestamp (or the consumer moved past it: a compacted or aborted record).
        """
        consumer = self._consumer = self._consumer or self._consumer_factory()
        want_stamps = self.settings.lag_seconds == "record-timestamp"
        # unsubscribe + assign: fresh partition state, so every high watermark is from this scan
        consumer.unsubscribe()
        consumer.assign(list(targets))
        wanted: dict[Any, deque[int]] = {}
        for tp, offsets in targets.items():
            ordered = sorted(offsets)
            wanted[tp] = deque(ordered if want_stamps else ())
            consumer.seek(tp, ordered[0] if want_stamps else ordered[-1])
        ends: dict[Any, int] = {}
        stamps: dict[tuple[Any, int], int] = {}
        deadline = time.monotonic() + self.settings.scan_timeout_s
        open_ = set(targets)
        while open_:
            if time.monotonic() > deadline:
                log.warning(
                    "kafka %s: no high watermark within %gs for %d partitions: %s",
                    self._address,
                    self.settings.scan_timeout_s,
                    len(open_),
                    sorted(f"{tp.topic}/{tp.partition}" for tp in open_)[:10],
                )
                break
            for tp, records in consumer.poll(timeout_ms=_POLL_MS, max_records=500).items():
                queue = wanted.get(tp)
                if tp not in open_ or not queue:
                    continue
                for record in records:
                    while queue and queue[0] <= record.offset:
                        stamps[(tp, queue.popleft())] = record.timestamp
                    if not queue:
                        break
            for tp in list(open_):
                end = consumer.highwater(tp)
                if end is None:
                    continue
                queue = wanted[tp]
                while queue and queue[-1] >= end:
                    queue.pop()  # caught up: no record to time
                position = consumer.position(tp)
                if queue and position is not None and position >= end:
                    queue.clear()  # the wanted records were skipped (compaction, aborts)
                if not queue:
                    ends[tp] = end
                    open_.discard(tp)
                    # park at the end: nothing more to decode for this partition
                    consumer.seek(tp, end)
                elif position is not None and queue[0] > position + _SEEK_GAP:
                    consumer.seek(tp, queue[0])
        return ends, stamps

    # -- clients and errors ------------------------------------------------------------

    @property
    def _address(self) -> str:
        return self.settings.bootstrap_servers

    def _client_config(self) -> dict[str, Any]:
        timeout_ms = int(self.settings.request_timeout_s * 1000)
        return {
            "bootstrap_servers": self.settings.bootstrap_servers.split(","),
            "client_id": f"watchloop-lag-{self.settings.cluster}",
            "request_timeout_ms": timeout_ms,
            "bootstrap_timeout_ms": timeout_ms,
        }

    def _default_admin(self) -> LagAdmin:
        kafka = _import_kafka()
        return kafka.KafkaAdminClient(**self._client_config())

    def _default_consumer(self) -> LagConsumer:
        kafka = _import_kafka()
        config = self._client_config()
        return kafka.KafkaConsumer(
            **config,
            group_id=None,
            enable_auto_commit=False,
            # An out-of-range committed offset restarts at the log start; the high
            # watermark then arrives with the first fetch.
            auto_offset_reset="earliest",
            # Caught-up partitions answer after this wait; 0 makes Tansu answer nothing.
            fetch_max_wait_ms=min(10, config["request_timeout_ms"] - 1),
            # KIP-74: the broker still sends at least one batch; this only bounds decoding.
            max_partition_fetch_bytes=64 * 1024,
        )

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """Client-library errors as collector errors naming the bootstrap address."""
        try:
            yield
        except CollectorError:
            raise
        except Exception as exc:
            if classify(exc) is None:
                raise
            raise translate(exc, "Kafka", self._address, COLLECTOR_ERRORS,
                            f"kafka lag: {action}") from exc


def _group_active(state: str | None) -> bool | None:
    normalised = (state or "").replace("_", "").replace("-", "").lower()
    if normalised in _ACTIVE_STATES:
        return True
    if normalised in _INACTIVE_STATES:
        return False
    return None


def _import_kafka() -> Any:
    return require("kafka", "the kafka-lag poller")
