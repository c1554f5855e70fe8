"""Monitor results as time series in the store, and reading them back.

Drift goes to ``drift_results`` (one row per column and method, plus a ``__dataset__`` row
with the share of drifted features); quality, traffic and SLO numbers go to
``monitor_results`` (one row per metric). Every row carries the evaluation time ``ts`` and
the ``ingest_time`` it was written at, so backtests can read the results as they were known.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from telemetry import PointInTime, Store
from telemetry.records import utc

from .detector import DriftReport
from .profiles import DATASET
from .quality import QualityReport
from .slo import SLOStatus, TrafficStats, window_label

_DRIFT_COLUMNS = ("ts", "ingest_time", "model", "model_version", "window_start", "window_end",
                  "feature", "kind", "method", "score", "threshold", "drifted", "p_value")
_METRIC_COLUMNS = ("ts", "ingest_time", "monitor", "model", "model_version", "window_start",
                   "window_end", "metric", "value", "labels")


class ResultWriter:
    """Writes monitor results; one insert per report."""

    def __init__(self, store: Store, *, clock: Callable[[], datetime] | None = None) -> None:
        self._store = store
        self._clock = clock or store.now

    def write_drift(self, report: DriftReport, ts: datetime) -> int:
        """Write a drift report's rows; returns how many (0 for a skipped report).

        ``kind`` is the column's role and type (``feature:numeric``, ``prediction:categorical``,
        ``label:categorical``); ``drifted`` of a non-deciding method is its own verdict. A
        reference column absent from every request of the window gets a row with method
        ``absent`` marked drifted (an upstream feature pipeline stopped sending it).
        """
        if report.skipped is not None or not report.columns:
            return 0
        ingest = utc(self._clock())
        rows: list[list[Any]] = [
            [utc(ts), ingest, report.model, report.version, utc(report.window_start),
             utc(report.window_end), c.column, f"{c.role}:{c.kind}",
             c.method if c.primary else f"{c.method}:extra", c.score, c.threshold,
             int(c.drifted), c.p_value]
            for c in report.columns
        ]
        rows.extend(
            [utc(ts), ingest, report.model, report.version, utc(report.window_start),
             utc(report.window_end), name, "absent", "absent", 1.0, 0.0, 1, None]
            for name in report.absent
        )
        rows.append([utc(ts), ingest, report.model, report.version, utc(report.window_start),
                     utc(report.window_end), DATASET, "dataset", "drift_share",
                     report.drift_share, report.share_threshold, int(report.dataset_drifted),
                     None])
        return self._store.insert("drift_results", rows, _DRIFT_COLUMNS)

    def write_quality(self, report: QualityReport, ts: datetime) -> int:
        """Write a quality report's metrics (with label coverage)."""
        metrics = {**report.metrics, "labelled": float(report.labelled),
                   "label_coverage": report.label_coverage}
        return self.write_metrics("quality", report.model, report.version,
                                  report.window_start, report.window_end, metrics, ts,
                                  {"task": report.task})

    def write_traffic(self, stats: TrafficStats, ts: datetime) -> int:
        """Write a version's traffic numbers."""
        return self.write_metrics("latency", stats.model, stats.version, stats.window_start,
                                  stats.window_end, stats.metrics(), ts)

    def write_slo(self, status: SLOStatus, ts: datetime) -> int:
        """Write an SLO's burn rates, alert conditions and remaining budget."""
        ingest = utc(self._clock())
        name = status.slo.name
        rows: list[list[Any]] = []

        def add(metric: str, value: float, start: datetime, labels: dict[str, str]) -> None:
            rows.append([utc(ts), ingest, "slo", status.model, status.version, utc(start),
                         utc(status.at), metric, float(value), {"slo": name, **labels}])

        for rate in status.burn_rates:
            add("burn_rate", rate.burn_rate, status.at - rate.window,
                {"window": window_label(rate.window)})
        for alert in status.alerts:
            add("burn_alert", float(alert.firing), status.at - alert.long,
                {"severity": alert.severity, "long": window_label(alert.long),
                 "short": window_label(alert.short), "factor": f"{alert.factor:g}"})
        period = status.period
        add("error_budget_remaining", status.budget_remaining, status.at - period.window,
            {"window": window_label(period.window)})
        add("bad_fraction", period.bad_fraction, status.at - period.window,
            {"window": window_label(period.window)})
        return self._store.insert("monitor_results", rows, _METRIC_COLUMNS)

    def write_metrics(
        self, monitor: str, model: str, version: str, start: datetime, end: datetime,
        metrics: Mapping[str, float], ts: datetime, labels: Mapping[str, str] | None = None,
    ) -> int:
        """Write one row per metric."""
        ingest = utc(self._clock())
        rows = [[utc(ts), ingest, monitor, model, version, utc(start), utc(end), name,
                 float(value), dict(labels or {})] for name, value in metrics.items()]
        return self._store.insert("monitor_results", rows, _METRIC_COLUMNS)


def latest_metrics(
    store: Store, model: str, version: str, monitor: str, *, as_of: datetime | None = None
) -> dict[str, float]:
    """The newest value of each metric a monitor wrote for a model version (as of a time).

    Meant for the monitors that write one series per metric (``quality``, ``latency``); SLO
    metrics are one series per SLO and window: read them with their labels.
    """
    pit = PointInTime(as_of)
    rows = store.query(
        f"SELECT metric, argMax(value, ts) FROM {pit.source('monitor_results')} "
        "WHERE monitor = {mon:String} AND model = {m:String} AND model_version = {v:String} "
        "GROUP BY metric",
        {**pit.params, "mon": monitor, "m": model, "v": str(version)},
    )
    return {metric: float(value) for metric, value in rows}
