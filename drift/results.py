"""Monitor results as time series in the store, and reading them back.

Drift goes to ``drift_results`` (one row per column and method, plus a ``__dataset__`` row
with the share of drifted features); quality, traffic and SLO numbers go to
``monitor_results`` (one row per metric). Every row carries the evaluation time ``ts`` and
the ``ingest_time`` it was written at, so backtests can read the results as they were known,
and its evidence (``drift.evidence``): status, the window's rows, the sample it was computed
from and the window's coverage. A result that is not ``ok`` is written too, with NULL scores,
so the newest result is always the current one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from telemetry import PointInTime, Store
from telemetry.clock import Clock, utc_now
from telemetry.records import utc

from .detector import DriftReport
from .evidence import OK, Status
from .profiles import DATASET
from .quality import METRICS, QualityReport
from .settings import window_label
from .slo import SLOStatus, TrafficStats

_DRIFT_COLUMNS = ("ts", "ingest_time", "model", "model_version", "window_start", "window_end",
                  "feature", "kind", "method", "score", "threshold", "drifted", "p_value",
                  "status", "window_rows", "sample_size", "coverage")
_METRIC_COLUMNS = ("ts", "ingest_time", "monitor", "model", "model_version", "window_start",
                   "window_end", "metric", "value", "labels", "status", "window_rows",
                   "sample_size", "coverage")


class ResultWriter:
    """Writes monitor results; one insert per report."""

    def __init__(self, store: Store, *, clock: Clock = utc_now) -> None:
        self._store = store
        self._clock = clock

    def write_drift(self, report: DriftReport, ts: datetime) -> int:
        """Write a drift report's rows; returns how many.

        ``kind`` is the column's role and type (``feature:numeric``, ``prediction:categorical``,
        ``label:categorical``); ``drifted`` of a non-deciding method is its own verdict. A
        reference column absent from every request of the window gets a row with method
        ``absent`` marked drifted (an upstream feature pipeline stopped sending it). A report
        that is not ``ok`` writes its dataset row alone, with its status and no score.
        """
        ingest = utc(self._clock())
        head = [utc(ts), ingest, report.model, report.version, utc(report.window_start),
                utc(report.window_end)]
        evidence = (report.rows, report.coverage)
        rows: list[list[Any]] = [
            [*head, c.column, f"{c.role}:{c.kind}",
             c.method if c.primary else f"{c.method}:extra", c.score, c.threshold,
             int(c.drifted), c.p_value, c.status, evidence[0], c.current_count, evidence[1]]
            for c in report.columns
        ]
        rows.extend([*head, name, "absent", "absent", 1.0, 0.0, 1, None, OK, evidence[0], 0,
                     evidence[1]] for name in report.absent)
        ok = report.status == OK
        rows.append([*head, DATASET, "dataset", "drift_share",
                     report.drift_share if ok else None, report.share_threshold,
                     int(report.dataset_drifted), None, report.status, evidence[0],
                     evidence[0], evidence[1]])
        return self._store.insert("drift_results", rows, _DRIFT_COLUMNS)

    def write_quality(self, report: QualityReport, ts: datetime) -> int:
        """Write a quality report's metrics (with label coverage); one that is not ``ok``
        writes its task's metrics as NULL."""
        metrics: dict[str, float | None] = dict.fromkeys(METRICS.get(report.task, ()))
        metrics.update(report.metrics)
        metrics.update(labelled=float(report.labelled), label_coverage=report.label_coverage)
        return self.write_metrics("quality", report.model, report.version,
                                  report.window_start, report.window_end, metrics, ts,
                                  {"task": report.task}, status=report.status,
                                  window_rows=report.requests, sample_size=report.labelled,
                                  coverage=report.coverage)

    def write_traffic(self, stats: TrafficStats, ts: datetime) -> int:
        """Write a version's traffic numbers."""
        return self.write_metrics("latency", stats.model, stats.version, stats.window_start,
                                  stats.window_end, stats.metrics(), ts, status=stats.status,
                                  window_rows=stats.requests, sample_size=stats.requests,
                                  coverage=stats.coverage)

    def write_slo(self, status: SLOStatus, ts: datetime) -> int:
        """Write an SLO's burn rates, alert conditions and remaining budget."""
        ingest = utc(self._clock())
        name = status.slo.name
        rows: list[list[Any]] = []

        def add(metric: str, value: float | None, window: timedelta, labels: dict[str, str],
                requests: int, covered: float, result: Status) -> None:
            rows.append([utc(ts), ingest, "slo", status.model, status.version,
                         utc(status.at - window), utc(status.at), metric, _number(value),
                         {"slo": name, **labels}, result, requests, requests, covered])

        for rate in status.burn_rates:
            add("burn_rate", rate.burn_rate, rate.window, {"window": window_label(rate.window)},
                rate.requests, rate.coverage, rate.status)
        period = status.period
        for metric, value in (("error_budget_remaining", status.budget_remaining),
                              ("bad_fraction", period.bad_fraction)):
            add(metric, value, period.window, {"window": window_label(period.window)},
                period.requests, period.coverage, period.status)
        return self._store.insert("monitor_results", rows, _METRIC_COLUMNS)

    def write_metrics(
        self, monitor: str, model: str, version: str, start: datetime, end: datetime,
        metrics: Mapping[str, float | None], ts: datetime,
        labels: Mapping[str, str] | None = None, *, status: Status = OK, window_rows: int = 0,
        sample_size: int = 0, coverage: float | None = None,
    ) -> int:
        """Write one row per metric, each with the evidence given."""
        ingest = utc(self._clock())
        rows = [[utc(ts), ingest, monitor, model, version, utc(start), utc(end), name,
                 _number(value), dict(labels or {}), status, window_rows, sample_size, coverage]
                for name, value in metrics.items()]
        return self._store.insert("monitor_results", rows, _METRIC_COLUMNS)


def latest_metrics(
    store: Store, model: str, version: str, monitor: str, *, as_of: datetime | None = None
) -> dict[str, float | None]:
    """The newest value of each metric a monitor wrote for a model version (as of a time);
    None where the newest result left it undefined.

    Meant for the monitors that write one series per metric (``quality``, ``latency``); SLO
    metrics are one series per SLO and window: read them with their labels.
    """
    pit = PointInTime(as_of)
    rows = store.query(
        # a tuple is never NULL, so argMax keeps a newest NULL rather than skipping it
        f"SELECT metric, argMax(tuple(value), ts).1 FROM {pit.source('monitor_results')} "
        "WHERE monitor = {mon:String} AND model = {m:String} AND model_version = {v:String} "
        "GROUP BY metric",
        {**pit.params, "mon": monitor, "m": model, "v": str(version)},
    )
    return {metric: _number(value) for metric, value in rows}


def _number(value: float | None) -> float | None:
    return None if value is None else float(value)
