"""What each collector has done, for /metrics, the store and the console."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass
class CollectorHealth:
    """Counters and state of one collector."""

    collector: str
    kind: str  # "source" or "poller"
    rows_in: int = 0
    rows_out: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    store_retries: int = 0
    lag: float | None = None
    last_success: datetime | None = None
    last_error: str = ""


class HealthBoard:
    """Thread-safe health of every collector, mirrored into Prometheus metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._lock = threading.Lock()
        self._health: dict[str, CollectorHealth] = {}
        registry = registry if registry is not None else CollectorRegistry()
        self._records = Counter(
            "watchloop_collector_records", "Records and rows handled by each collector",
            ["collector", "outcome"], registry=registry)
        self._retries = Counter(
            "watchloop_collector_store_retries", "Store writes retried after a failure",
            ["collector"], registry=registry)
        self._lag = Gauge(
            "watchloop_collector_lag", "Records waiting at the source, when it can tell",
            ["collector"], registry=registry)
        self._last_success = Gauge(
            "watchloop_collector_last_success_timestamp_seconds",
            "When the collector last stored a batch or a scrape", ["collector"],
            registry=registry)
        self._up = Gauge(
            "watchloop_collector_up", "1 when the last read of the source succeeded",
            ["collector"], registry=registry)

    def register(self, collector: str, kind: str) -> None:
        with self._lock:
            self._health[collector] = CollectorHealth(collector, kind)

    def received(self, collector: str, count: int, lag: float | None) -> None:
        with self._lock:
            health = self._health[collector]
            health.rows_in += count
            health.lag = lag
        self._records.labels(collector, "received").inc(count)
        self._up.labels(collector).set(1)
        if lag is not None:
            self._lag.labels(collector).set(lag)

    def stored(self, collector: str, stored: int, dead: int, duplicates: int,
               at: datetime) -> None:
        with self._lock:
            health = self._health[collector]
            health.rows_out += stored
            health.dead_letters += dead
            health.duplicates += duplicates
            health.last_success = at
            health.last_error = ""
        self._records.labels(collector, "stored").inc(stored)
        self._records.labels(collector, "dead_lettered").inc(dead)
        self._records.labels(collector, "duplicate").inc(duplicates)
        self._last_success.labels(collector).set(at.timestamp())

    def failed(self, collector: str, error: str, *, store: bool) -> bool:
        """Record an error; return True if it differs from the previous one (worth logging)."""
        with self._lock:
            health = self._health[collector]
            changed = health.last_error != error
            health.last_error = error
            if store:
                health.store_retries += 1
        if store:
            self._retries.labels(collector).inc()
        else:
            self._up.labels(collector).set(0)
        return changed

    def snapshot(self) -> list[CollectorHealth]:
        """A copy of every collector's health."""
        with self._lock:
            return [CollectorHealth(**vars(h)) for h in self._health.values()]
