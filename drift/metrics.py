"""Prometheus gauges of the monitors: when each last ran, and the newest result per version.

Set by ``MonitorRunner`` after every run. A result that is not ``ok`` (too little data) or a
metric that is undefined removes its series rather than leaving an old value standing, as
Prometheus exporters do for a value they no longer know.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge

from .evidence import OK

MONITORS = ("traffic", "slo", "drift", "quality")


class MonitorMetrics:
    """The monitors' gauges on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.last_run = Gauge(
            "watchloop_monitor_last_run_timestamp_seconds",
            "When each monitor last ran (Unix time)", ["monitor"], registry=registry)
        self.last_success = Gauge(
            "watchloop_monitor_last_success_timestamp_seconds",
            "When each monitor last ran without an error for any model version",
            ["monitor"], registry=registry)
        self.drift_share = Gauge(
            "watchloop_drift_share", "Share of drifted features in the newest drift window",
            ["model", "version"], registry=registry)
        self.traffic = Gauge(
            "watchloop_model_traffic", "Newest traffic numbers: latency quantiles, error rate",
            ["model", "version", "metric"], registry=registry)
        self.quality = Gauge(
            "watchloop_model_quality", "Newest quality metrics from delayed labels",
            ["model", "version", "metric"], registry=registry)
        self.burn_rate = Gauge(
            "watchloop_slo_burn_rate", "Error-budget burn rate of each SLO window",
            ["model", "version", "slo", "window"], registry=registry)
        self.budget_remaining = Gauge(
            "watchloop_slo_error_budget_remaining",
            "Share of the SLO period's error budget left", ["model", "version", "slo"],
            registry=registry)

    def ran(self, at: datetime, failed: Iterable[str]) -> None:
        """A run at ``at``; ``failed`` names the monitors that had an error in it."""
        failed = set(failed)
        for monitor in MONITORS:
            self.last_run.labels(monitor).set(at.timestamp())
            if monitor not in failed:
                self.last_success.labels(monitor).set(at.timestamp())

    def drift(self, model: str, version: str, status: str, share: float) -> None:
        _set(self.drift_share, (model, version), share if status == OK else None)

    def traffic_metric(self, model: str, version: str, metric: str,
                       value: float | None) -> None:
        _set(self.traffic, (model, version, metric), value)

    def quality_metric(self, model: str, version: str, metric: str,
                       value: float | None) -> None:
        _set(self.quality, (model, version, metric), value)

    def slo(self, model: str, version: str, slo: str, windows: dict[str, float | None],
            budget: float | None) -> None:
        for window, rate in windows.items():
            _set(self.burn_rate, (model, version, slo, window), rate)
        _set(self.budget_remaining, (model, version, slo), budget)


def _set(gauge: Gauge, labels: tuple[str, ...], value: float | None) -> None:
    if value is not None:
        gauge.labels(*labels).set(value)
        return
    with contextlib.suppress(KeyError):  # never set
        gauge.remove(*labels)
