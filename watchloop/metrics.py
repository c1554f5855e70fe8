"""Prometheus metrics of the HTTP API, on a registry the caller passes in.

The records themselves are counted by the writer (``telemetry.metrics``), whatever their
source; the monitors' gauges are in ``drift.metrics``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class ShellMetrics:
    """Counters and timings of the shell's API and its writes to the store."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.http_requests = Counter(
            "watchloop_http_requests",
            "HTTP requests served by the API, by route and status code",
            ["route", "code"],
            registry=registry,
        )
        self.store_write_seconds = Histogram(
            "watchloop_store_write_seconds",
            "Time to validate and store one ingest batch",
            ["kind"],
            registry=registry,
        )
        self.store_errors = Counter(
            "watchloop_store_errors",
            "Store operations that failed (the batch was not acknowledged)",
            ["kind"],
            registry=registry,
        )
