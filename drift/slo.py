"""Latency and error monitors from the per-minute rollup, and SLO error-budget burn rates.

Windows are whole minutes: a window of length W evaluated at ``now`` covers the minutes in
``[floor(now) - W, floor(now))``, so that a minute still filling up never counts.

* Traffic (``LatencyMonitor``): requests, errors, error rate, throughput, mean/max latency
  and p50/p90/p95/p99 (merged quantile states) from ``inference_rollup_1m``.
* SLOs (``SLOMonitor``): an availability SLO counts errors from the rollup; a latency SLO
  counts successful requests slower than its threshold in ``inference_logs`` (the rollup
  keeps quantiles, which cannot say how many requests exceeded an arbitrary threshold).
  Burn rate = bad fraction / (1 - objective), over each window of the SLO's
  ``burn_windows``; whether a pair of windows burns fast enough to page is decided by the
  alert rules (``alerts.burn``).

Every window states its evidence: the requests it held and its ``coverage``, the share of
the window from its first request to its end (a 3-day window over 8 minutes of data covers
0.002 of it). Without requests, a rate or a quantile is undefined: None, never 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from telemetry import PointInTime, Store
from telemetry.queries import traffic
from telemetry.records import utc

from .evidence import NO_DATA, OK, Status, coverage, ratio
from .settings import LatencySettings, SLOSettings


def floor_minute(moment: datetime) -> datetime:
    """The start of ``moment``'s minute, in UTC."""
    return utc(moment).replace(second=0, microsecond=0)


@dataclass(frozen=True)
class TrafficStats:
    """Requests, errors and latency of a model version over a window."""

    model: str
    version: str
    window_start: datetime
    window_end: datetime
    requests: int
    errors: int
    latency_mean_ms: float | None
    latency_max_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    coverage: float = 0.0

    @classmethod
    def empty(cls, model: str, version: str, start: datetime, end: datetime) -> TrafficStats:
        """A window without requests: every rate and quantile undefined."""
        return cls(model, version, start, end, 0, 0, None, None, None, None, None, None)

    @property
    def status(self) -> Status:
        """``no_data`` without requests."""
        return OK if self.requests else NO_DATA

    @property
    def error_rate(self) -> float | None:
        """Errors per request (None without traffic)."""
        return ratio(self.errors, self.requests)

    @property
    def throughput_rps(self) -> float:
        """Requests per second over the window."""
        seconds = (self.window_end - self.window_start).total_seconds()
        return self.requests / seconds if seconds > 0 else 0.0

    def metrics(self) -> dict[str, float | None]:
        """Every number, keyed as written to monitor_results."""
        return {
            "requests": float(self.requests), "errors": float(self.errors),
            "error_rate": self.error_rate, "throughput_rps": self.throughput_rps,
            "latency_mean_ms": self.latency_mean_ms, "latency_max_ms": self.latency_max_ms,
            "latency_p50_ms": self.p50_ms, "latency_p90_ms": self.p90_ms,
            "latency_p95_ms": self.p95_ms, "latency_p99_ms": self.p99_ms,
        }


class LatencyMonitor:
    """Traffic statistics per model version, from the per-minute rollup."""

    def __init__(self, store: Store, settings: LatencySettings | None = None) -> None:
        self._store = store
        self.settings = settings or LatencySettings()

    def evaluate(
        self, now: datetime, *, model: str | None = None, version: str | None = None,
        window: timedelta | None = None,
    ) -> list[TrafficStats]:
        """Stats of every model version with traffic in the window ending at ``now``'s
        minute (or only ``model``/``version``)."""
        end = floor_minute(now)
        start = end - (window or self.settings.window)
        return [
            TrafficStats(r["model"], r["model_version"], start, end, int(r["requests"]),
                         int(r["errors"]), ratio(float(r["latency_sum_ms"]), r["requests"]),
                         float(r["latency_max_ms"]), float(r["p50_ms"]), float(r["p90_ms"]),
                         float(r["p95_ms"]), float(r["p99_ms"]),
                         coverage=coverage(start, end, r["first_minute"]))
            for r in traffic(self._store, start, end, model=model or "", version=version or "")
        ]


@dataclass(frozen=True)
class BurnRate:
    """How fast one window spent the error budget."""

    window: timedelta
    requests: int
    bad: int
    burn_rate: float | None
    coverage: float = 0.0

    @property
    def status(self) -> Status:
        """``no_data`` without requests."""
        return OK if self.requests else NO_DATA

    @property
    def bad_fraction(self) -> float | None:
        """Bad events per event (None without traffic)."""
        return ratio(self.bad, self.requests)


@dataclass(frozen=True)
class SLOStatus:
    """An SLO of a model version at a moment: burn rates and budget left (whether they page
    is alerting's call: ``alerts.burn``)."""

    slo: SLOSettings
    model: str
    version: str
    at: datetime
    burn_rates: tuple[BurnRate, ...]
    period: BurnRate

    @property
    def budget_remaining(self) -> float | None:
        """The share of the period's error budget left (negative when overspent; None
        without traffic in the period)."""
        burn = self.period.burn_rate
        return None if burn is None else 1.0 - burn

    def burn(self, window: timedelta) -> BurnRate:
        """The burn rate over ``window``."""
        for rate in self.burn_rates:
            if rate.window == window:
                return rate
        raise KeyError(f"no burn rate over {window}")


class SLOMonitor:
    """Evaluates SLOs: burn rates over the configured windows and the period's budget."""

    def __init__(self, store: Store, slos: Sequence[SLOSettings] = ()) -> None:
        self._store = store
        self.slos = tuple(slos)

    def evaluate(
        self, slo: SLOSettings, model: str, version: str, now: datetime,
        *, as_of: datetime | None = None,
    ) -> SLOStatus:
        """The SLO's burn rates for a model version at ``now`` (whole minutes)."""
        end = floor_minute(now)
        burn_windows = {w for b in slo.burn_windows for w in (b.long, b.short)}
        windows = sorted(burn_windows | {slo.period})
        counts = self._counts(slo, model, version, end, windows, as_of)
        budget = 1.0 - slo.objective
        rates = {}
        for w, (n, bad, first) in zip(windows, counts, strict=True):
            fraction = ratio(bad, n)
            rates[w] = BurnRate(w, n, bad, None if fraction is None else fraction / budget,
                                coverage(end - w, end, first))
        shown = tuple(rates[w] for w in windows if w in burn_windows)
        return SLOStatus(slo, model, str(version), end, shown, rates[slo.period])

    def _counts(
        self, slo: SLOSettings, model: str, version: str, end: datetime,
        windows: list[timedelta], as_of: datetime | None,
    ) -> list[tuple[int, int, datetime | None]]:
        params: dict[str, object] = {"m": model, "v": str(version), "end": end,
                                     "start": end - max(windows)}
        if slo.kind == "availability":
            time_col, total, bad = "minute", "requests", "errors"
            source = "inference_rollup_1m"
            time_type = "DateTime('UTC')"
            where = ""
        else:
            time_col, total, bad = "event_time", "1", "latency_ms > {thr:Float64}"
            pit = PointInTime(as_of)
            source = pit.source("inference_logs")
            params.update(pit.params, thr=slo.threshold_ms)
            time_type = "DateTime64(3, 'UTC')"
            where = "AND status = 'ok' "
        parts = []
        for i, window in enumerate(windows):
            params[f"w{i}"] = end - window
            since = f"{time_col} >= {{w{i}:{time_type}}}"
            first = f"if(countIf({since}) = 0, NULL, minIf({time_col}, {since}))"
            if slo.kind == "availability":
                parts.append(f"sumIf({total}, {since}), sumIf({bad}, {since}), {first}")
            else:
                parts.append(f"countIf({since}), countIf({since} AND {bad}), {first}")
        row = self._store.query(
            f"SELECT {', '.join(parts)} FROM {source} "
            "WHERE model = {m:String} AND model_version = {v:String} "
            f"AND {time_col} >= {{start:{time_type}}} AND {time_col} < {{end:{time_type}}} "
            f"{where}",
            params,
        )[0]
        return [(int(row[3 * i]), int(row[3 * i + 1]), row[3 * i + 2])
                for i in range(len(windows))]
