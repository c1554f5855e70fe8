"""The monitor runner: evaluates every monitor on a schedule and writes the results.

Each run (``run_once(now)``) finds the model versions with traffic in the longest window it
needs, then for each one writes traffic stats, SLO burn rates, drift against the version's
reference profile (the newest as of ``now``) and quality from the labels known as of ``now``.
Alert rules, the console and backtests read what it wrote. Run with a past ``now`` (a
backtest), it reproduces what it would have written then, except for the traffic numbers,
which come from the rollup as it is now. A failure in one monitor of one version is logged
and reported in the run's summary; the others still run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from telemetry import Store, StoreError
from telemetry.claims import TickClaims
from telemetry.clock import Clock, utc_now

from .detector import DriftMonitor, DriftReport
from .errors import DriftError
from .metrics import MONITORS, MonitorMetrics
from .quality import METRICS, QualityMonitor, QualityReport
from .repository import ProfileRepository
from .results import ResultWriter
from .settings import MonitorSettings, window_label
from .slo import LatencyMonitor, SLOMonitor, SLOStatus, TrafficStats, floor_minute

log = logging.getLogger("watchloop.drift")
#: How far back the runner looks for versions whose newest result still shows data.
_RESULT_LOOKBACK = timedelta(days=7)


@dataclass
class RunSummary:
    """What one run evaluated and wrote."""

    at: datetime
    versions: list[tuple[str, str]] = field(default_factory=list)
    traffic: list[TrafficStats] = field(default_factory=list)
    slos: list[SLOStatus] = field(default_factory=list)
    drift: list[DriftReport] = field(default_factory=list)
    quality: list[QualityReport] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rows_written: int = 0


class MonitorRunner:
    """Evaluates drift, quality, traffic and SLO monitors every ``settings.interval``."""

    name = "monitors"

    def __init__(
        self,
        settings: MonitorSettings,
        store: Store,
        *,
        clock: Clock = utc_now,
        profiles: ProfileRepository | None = None,
        writer: ResultWriter | None = None,
        claims: TickClaims | None = None,
        metrics: MonitorMetrics | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        self._clock = clock
        self._profiles = profiles or ProfileRepository(store, clock=self._clock)
        self._writer = writer or ResultWriter(store, clock=self._clock)
        self._drift = DriftMonitor(store, settings.drift)
        self._quality = QualityMonitor(store, settings.quality)
        self._latency = LatencyMonitor(store, settings.latency)
        self._slo = SLOMonitor(store, settings.slos)
        self._claims = claims
        self._metrics = metrics
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: RunSummary | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Run in a background thread until ``stop``: once at once, then every interval."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="watchloop-monitors",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        """Stop after the run in progress, if any."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        """True while the background thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        """Run each tick of the schedule (ticks are whole multiples of the interval since the
        epoch), once across every process sharing the store when ``claims`` is given."""
        interval = self.settings.interval.total_seconds()
        while not self._stop.is_set():
            now = self._clock()
            tick = int(now.timestamp() // interval)
            try:
                if self._claims is None or self._claims.claim(tick):
                    self.last = self.run_once(now)
            except Exception:  # the schedule must survive any failed run
                log.exception("monitor run failed")
            self._stop.wait(max(0.0, (tick + 1) * interval - self._clock().timestamp()))

    # --- one run ------------------------------------------------------------------------------

    def run_once(self, now: datetime) -> RunSummary:
        """Evaluate every monitor for every active model version as of ``now``; write results."""
        summary = RunSummary(at=now)
        try:
            summary.versions = self._active_versions(now)
        except StoreError as exc:
            summary.errors.append(f"finding active model versions: {exc}")
            log.error("monitors: %s", summary.errors[-1])
            self._observe(summary)
            return summary
        self._traffic(now, summary)
        for model, version in summary.versions:
            self._guard(summary, f"slo {model}/{version}", self._slos, now, model, version)
            self._guard(summary, f"drift {model}/{version}", self._drift_one, now, model,
                        version)
            self._guard(summary, f"quality {model}/{version}", self._quality_one, now, model,
                        version)
        self._observe(summary)
        return summary

    def _observe(self, summary: RunSummary) -> None:
        """Mirror the run into the Prometheus gauges."""
        if self._metrics is None:
            return
        metrics = self._metrics
        failed = {error.split(" ", 1)[0].rstrip(":") for error in summary.errors}
        if failed - set(MONITORS):  # the run failed before any monitor: every one failed
            failed = set(MONITORS)
        metrics.ran(summary.at, failed)
        for stats in summary.traffic:
            for name, value in stats.metrics().items():
                metrics.traffic_metric(stats.model, stats.version, name, value)
        for report in summary.drift:
            metrics.drift(report.model, report.version, report.status, report.drift_share)
        for quality in summary.quality:
            for name in METRICS.get(quality.task, ()):
                metrics.quality_metric(quality.model, quality.version, name,
                                       quality.metrics.get(name))
        for status in summary.slos:
            metrics.slo(status.model, status.version, status.slo.name,
                        {window_label(r.window): r.burn_rate for r in status.burn_rates},
                        status.budget_remaining)

    def _active_versions(self, now: datetime) -> list[tuple[str, str]]:
        lookback = max(
            [self.settings.drift.window, self.settings.quality.window,
             self.settings.latency.window]
            + [s.drift.window for s in self.settings.models.values() if s.drift]
            + [s.quality.window for s in self.settings.models.values() if s.quality]
            + [b.long for slo in self.settings.slos for b in slo.burn_windows]
        )
        end = floor_minute(now)
        # A version whose traffic left every window is evaluated once more, so that its
        # newest results say no_data rather than leaving the last old ones standing.
        newest_has_data = ("SELECT model, model_version FROM {table} "
                           "WHERE ts >= {since:DateTime64(3, 'UTC')} "
                           "AND ts <= {now:DateTime64(3, 'UTC')} GROUP BY model, model_version "
                           "HAVING argMax(status != 'no_data', (ts, status != 'no_data'))")
        rows = self._store.query(
            "SELECT DISTINCT model, model_version FROM ("
            "SELECT model, model_version FROM inference_rollup_1m "
            "WHERE minute >= {start:DateTime('UTC')} AND minute <= {end:DateTime('UTC')} "
            f"UNION ALL {newest_has_data.replace('{table}', 'monitor_results')} "
            f"UNION ALL {newest_has_data.replace('{table}', 'drift_results')}) "
            "ORDER BY model, model_version",
            {"start": end - lookback, "end": end, "now": now,
             "since": now - max(lookback, _RESULT_LOOKBACK)},
        )
        return [(str(m), str(v)) for m, v in rows]

    def _traffic(self, now: datetime, summary: RunSummary) -> None:
        def run() -> None:
            by_window: dict[object, list[TrafficStats]] = {}
            for model, _ in summary.versions:
                _, _, latency = self.settings.for_model(model)
                if latency.enabled and latency.window not in by_window:
                    by_window[latency.window] = self._latency.evaluate(now,
                                                                       window=latency.window)
            for model, version in summary.versions:
                _, _, latency = self.settings.for_model(model)
                if not latency.enabled:
                    continue
                found = {(s.model, s.version): s for s in by_window[latency.window]}
                end = floor_minute(now)
                # active in a longer window but not this one: written as no_data
                stats = found.get((model, version)) or TrafficStats.empty(
                    model, version, end - latency.window, end)
                summary.traffic.append(stats)
                summary.rows_written += self._writer.write_traffic(stats, now)

        self._guard(summary, "traffic", run)

    def _slos(self, now: datetime, model: str, version: str, summary: RunSummary) -> None:
        for slo in self.settings.slos:
            if slo.applies_to(model, version):
                status = self._slo.evaluate(slo, model, version, now, as_of=now)
                summary.slos.append(status)
                summary.rows_written += self._writer.write_slo(status, now)

    def _drift_one(self, now: datetime, model: str, version: str, summary: RunSummary) -> None:
        drift, _, _ = self.settings.for_model(model)
        if not drift.enabled:
            return
        profile = self._profiles.find_latest(model, version, as_of=now)
        if profile is None:
            summary.skipped.append(f"drift {model}/{version}: no reference profile")
            return
        report = self._drift.evaluate(profile, now - drift.window, now, as_of=now,
                                      settings=drift)
        if report.skipped:
            summary.skipped.append(f"drift {model}/{version}: {report.skipped}")
        summary.drift.append(report)
        summary.rows_written += self._writer.write_drift(report, now)

    def _quality_one(
        self, now: datetime, model: str, version: str, summary: RunSummary
    ) -> None:
        _, quality, _ = self.settings.for_model(model)
        if not quality.enabled:
            return
        report = self._quality.evaluate(model, version, now - quality.window, now, as_of=now,
                                        settings=quality)
        if report.skipped:
            summary.skipped.append(f"quality {model}/{version}: {report.skipped}")
        summary.quality.append(report)
        summary.rows_written += self._writer.write_quality(report, now)

    def _guard(self, summary: RunSummary, what: str, func: Callable[..., None],
               *args: object) -> None:
        try:
            if args:
                func(*args, summary)
            else:
                func()
        except (StoreError, DriftError, ValueError) as exc:
            summary.errors.append(f"{what}: {exc}")
            log.error("monitors: %s failed: %s", what, exc)
