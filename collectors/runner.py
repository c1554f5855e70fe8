"""Runs record sources and metric pollers: batch, store with retries, then acknowledge.

For each record source a thread polls, buffers until the batch is full or old enough, hands
the batch to the ``TelemetryWriter`` and acknowledges it to the source only once the store
accepted it. While the store is failing the thread retries with exponential backoff and does
not poll: that is the backpressure, and the source keeps everything unacknowledged. On stop,
the buffer is flushed (or, if the store is still down, left unacknowledged for redelivery).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from telemetry import StoreError, TelemetryWriter
from telemetry.clock import Clock, utc_now
from telemetry.errors import AuthenticationError
from telemetry.extras import MissingExtraError
from telemetry.store import Store

from .base import CollectorError, MetricPoller, MetricRows, RecordSource, SourceRecord
from .health import HealthBoard

log = logging.getLogger("watchloop.collectors")


class RunnerSettings(BaseModel):
    """How collectors batch and retry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: Annotated[int, Field(gt=0)] = 5000
    flush_interval_s: Annotated[float, Field(gt=0)] = 0.25
    poll_timeout_s: Annotated[float, Field(gt=0)] = 0.1
    backoff_initial_s: Annotated[float, Field(gt=0)] = 0.1
    backoff_max_s: Annotated[float, Field(gt=0)] = 10.0
    health_interval_s: Annotated[float, Field(gt=0)] = 10.0
    max_pending_metric_rows: Annotated[int, Field(gt=0)] = 100_000


class CollectorRunner:
    """Schedules every collector in background threads; one component of the shell."""

    name = "collectors"

    def __init__(
        self,
        store: Store,
        writer: TelemetryWriter,
        *,
        sources: Sequence[RecordSource] = (),
        pollers: Sequence[MetricPoller] = (),
        settings: RunnerSettings | None = None,
        health: HealthBoard | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._writer = writer
        self._sources = list(sources)
        self._pollers = list(pollers)
        self.settings = settings or RunnerSettings()
        self.health = health or HealthBoard()
        self._clock = clock
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        names = [c.name for c in (*self._sources, *self._pollers)]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"collector names must be unique; repeated: {sorted(duplicates)}")
        for source in self._sources:
            self.health.register(source.name, "source")
        for poller in self._pollers:
            self.health.register(poller.name, "poller")

    def start(self) -> None:
        """Start one thread per collector, and one that records health in the store."""
        for source in self._sources:
            self._spawn(f"source-{source.name}", self._run_source, source)
        for poller in self._pollers:
            self._spawn(f"poller-{poller.name}", self._run_poller, poller)
        self._spawn("collector-health", self._run_health)

    def stop(self, timeout: float = 30) -> None:
        """Stop polling, flush buffers, acknowledge what was stored, close sources."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()

    def _spawn(self, name: str, target: Callable, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- record sources ------------------------------------------------------------------

    def _run_source(self, source: RecordSource) -> None:
        settings = self.settings
        buffer: list[SourceRecord] = []
        oldest = 0.0
        delay = settings.backoff_initial_s
        try:
            while not self._stop.is_set():
                try:
                    batch = source.poll(settings.batch_size - len(buffer), settings.poll_timeout_s)
                    delay = settings.backoff_initial_s
                except Exception as exc:  # keep trying; nothing was acknowledged
                    reason = str(exc) if isinstance(exc, CollectorError) \
                        else f"{type(exc).__name__}: {exc}"
                    if self.health.failed(source.name, reason, store=False):
                        log.warning("%s: %s (retrying with backoff)", source.name, reason,
                                    exc_info=not isinstance(exc, CollectorError))
                    # refused credentials or a missing package are not fixed by a retry in
                    # a moment: retried at the slowest pace, for when someone fixes them
                    slow = isinstance(exc, (AuthenticationError, MissingExtraError))
                    self._stop.wait(settings.backoff_max_s if slow else delay)
                    delay = min(delay * 2, settings.backoff_max_s)
                    continue
                if batch.records:
                    if not buffer:
                        oldest = time.monotonic()
                    buffer.extend(batch.records)
                    self.health.received(source.name, len(batch.records), batch.lag)
                full = len(buffer) >= settings.batch_size
                due = full or time.monotonic() - oldest >= settings.flush_interval_s
                if buffer and due and self._flush(source, buffer):
                    buffer = []
            if buffer:
                self._flush(source, buffer)
        finally:
            source.close()

    def _flush(self, source: RecordSource, buffer: list[SourceRecord]) -> bool:
        """Store the buffer, retrying with backoff, and acknowledge it once stored.

        Returns False, leaving the buffer unacknowledged, only when stopping while the store
        keeps failing.
        """
        logs = [r.payload for r in buffer if r.kind == "log" and r.error is None]
        labels = [r.payload for r in buffer if r.kind == "label" and r.error is None]
        broken = [r for r in buffer if r.error is not None]
        delay = self.settings.backoff_initial_s
        attempts_while_stopping = 0
        while True:
            try:
                stored = dead = duplicates = 0
                for payloads, write in ((logs, self._writer.write_logs),
                                        (labels, self._writer.write_labels)):
                    if payloads:
                        result = write(payloads, source.name)
                        stored += result.accepted
                        dead += result.rejected
                        duplicates += result.duplicates
                for kind, table_kind in (("log", "inference_log"), ("label", "label")):
                    rejected = [(r.payload, r.error) for r in broken if r.kind == kind]
                    if rejected:
                        dead += self._writer.dead_letter(rejected, source.name, table_kind)
                break
            except Exception as exc:  # noqa: BLE001 - a batch must never end the source
                # The writer already dead-letters records the store refuses on their own; what
                # reaches here is the store away, or a bug: keep the batch and retry it.
                reason = f"store: {exc}" if isinstance(exc, StoreError) \
                    else f"{type(exc).__name__}: {exc}"
                if self.health.failed(source.name, reason, store=True):
                    log.warning("%s: a batch of %d was not stored; retrying: %s",
                                source.name, len(buffer), reason,
                                exc_info=not isinstance(exc, StoreError))
                if self._stop.is_set():
                    attempts_while_stopping += 1
                    if attempts_while_stopping > 3:
                        log.warning("%s: stopping with %d records unacknowledged; the source "
                                    "will deliver them again", source.name, len(buffer))
                        return False
                    time.sleep(self.settings.backoff_initial_s)
                    continue
                self._stop.wait(delay)
                delay = min(delay * 2, self.settings.backoff_max_s)
        try:
            source.acknowledge(buffer)
        except CollectorError as exc:
            # Stored but not acknowledged: the source retries the acknowledgement, or delivers
            # the records again and the writer recognises them as duplicates.
            log.warning("%s: acknowledging failed: %s", source.name, exc)
        self.health.stored(source.name, stored, dead, duplicates, self._clock())
        return True

    # -- metric pollers ------------------------------------------------------------------

    def _run_poller(self, poller: MetricPoller) -> None:
        pending: dict[str, list[MetricRows]] = {}
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    for rows in poller.collect():
                        if len(rows):
                            pending.setdefault(rows.table, []).append(rows)
                    self.health.received(poller.name, 0, None)
                except CollectorError as exc:
                    if self.health.failed(poller.name, str(exc), store=False):
                        log.warning("%s: %s", poller.name, exc)
                except Exception as exc:  # a bug must not end the poller's thread for good
                    if self.health.failed(poller.name, f"{type(exc).__name__}: {exc}",
                                          store=False):
                        log.exception("%s: unexpected error; trying again next tick",
                                      poller.name)
                self._store_metrics(poller.name, pending)
                elapsed = time.monotonic() - started
                self._stop.wait(max(0.0, poller.interval_s - elapsed))
            self._store_metrics(poller.name, pending)
        finally:
            poller.close()

    def _store_metrics(self, name: str, pending: dict[str, list[MetricRows]]) -> None:
        for table in list(pending):
            merged = _merge(pending[table])
            try:
                count = self._store.insert_columns(table, merged.columns)
            except StoreError as exc:
                if self.health.failed(name, f"store: {exc}", store=True):
                    log.warning("%s: the store refused %d rows; keeping them: %s",
                                name, len(merged), exc)
                pending[table] = [_trim(merged, self.settings.max_pending_metric_rows)]
                continue
            del pending[table]
            self.health.stored(name, count, 0, 0, self._clock())

    # -- health ----------------------------------------------------------------------------

    def _run_health(self) -> None:
        while not self._stop.wait(self.settings.health_interval_s):
            self.write_health()
        self.write_health()

    def write_health(self) -> None:
        """Record every collector's health in the store (best effort)."""
        snapshot = self.health.snapshot()
        if not snapshot:
            return
        now = self._clock()
        try:
            self._store.insert(
                "collector_health",
                [[now, now, h.collector, h.kind, h.rows_in, h.rows_out, h.dead_letters,
                  h.duplicates, h.store_retries, h.lag, h.last_success, h.last_error]
                 for h in snapshot],
                ["ts", "ingest_time", "collector", "kind", "rows_in", "rows_out",
                 "dead_letters", "duplicates", "store_retries", "lag", "last_success",
                 "last_error"],
            )
        except StoreError as exc:
            log.debug("collector health not stored: %s", exc)


def _merge(parts: list[MetricRows]) -> MetricRows:
    if len(parts) == 1:
        return parts[0]
    columns: dict[str, list] = {name: [] for name in parts[0].columns}
    for part in parts:
        for name, values in part.columns.items():
            columns[name].extend(values)
    return MetricRows(parts[0].table, columns)


def _trim(rows: MetricRows, limit: int) -> MetricRows:
    """Keep the newest ``limit`` rows: a long outage must not exhaust memory."""
    if len(rows) <= limit:
        return rows
    log.warning("%s: dropping the oldest %d unstored metric rows", rows.table, len(rows) - limit)
    return MetricRows(rows.table, {n: v[-limit:] for n, v in rows.columns.items()})
