"""The post-deploy watch, in the manner of Flagger and Argo Rollouts.

Every ``interval_s`` after promotion, the new version's traffic since promotion (from its
payload logs in the store) is checked against the previous version's baseline (its traffic
in the ``baseline_window_s`` before promotion): error rate, p99 latency, and the
population stability index of its predictions on the baseline's deciles. A check with
fewer than ``min_requests`` requests is inconclusive. ``failure_limit`` failed checks fail
the analysis (the caller rolls back); ``checks`` checks complete it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from telemetry.clock import utc_now
from telemetry.store import Store

from .observations import WindowStats, bucket_counts, psi, window_stats
from .settings import AnalysisSettings

__all__ = ["AnalysisCheck", "AnalysisResult", "PostDeployAnalysis"]

Outcome = Literal["succeeded", "failed", "inconclusive"]


@dataclass(frozen=True)
class AnalysisCheck:
    """One check of the watch: what the new version did, and what it was held to."""

    index: int
    at: datetime
    requests: int
    error_rate: float | None
    p99_ms: float | None
    psi: float | None
    verdict: Literal["passed", "failed", "inconclusive"]
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AnalysisResult:
    """The watch's outcome, its checks and the baseline they were held to."""

    outcome: Outcome
    checks: list[AnalysisCheck]
    baseline: dict[str, Any]
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PostDeployAnalysis:
    """Runs the watch for one promotion; the store is where the payload logs land."""

    def __init__(self, store: Store, settings: AnalysisSettings,
                 clock: Callable[[], datetime] = utc_now,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.sleep = sleep

    def run(self, model: str, version: str, previous: str | None, promoted_at: datetime,
            on_check: Callable[[AnalysisCheck], None] | None = None) -> AnalysisResult:
        """Check ``settings.checks`` times, or until ``failure_limit`` checks failed."""
        s = self.settings
        start = promoted_at - timedelta(seconds=s.baseline_window_s)
        base = (window_stats(self.store, model, previous, start, promoted_at)
                if previous else None)
        base_counts = (bucket_counts(self.store, model, previous, start, promoted_at,
                                     base.deciles) if base and base.deciles else None)
        baseline = {"version": previous, **(asdict(base) if base else {})}
        checks: list[AnalysisCheck] = []
        failures = 0
        for index in range(1, s.checks + 1):
            self.sleep(s.interval_s)
            now = self.clock()
            current = window_stats(self.store, model, version, promoted_at, now)
            drift = (psi(base_counts, bucket_counts(self.store, model, version, promoted_at,
                                                    now, base.deciles))
                     if base_counts and base else None)
            check = self._judge(index, now, current, base, drift)
            checks.append(check)
            if on_check:
                on_check(check)
            if check.verdict == "failed":
                failures += 1
                if failures >= s.failure_limit:
                    return AnalysisResult("failed", checks, baseline,
                                          f"{failures} of {index} checks failed; last: "
                                          + "; ".join(check.reasons))
        if any(c.verdict == "passed" for c in checks):
            return AnalysisResult("succeeded", checks, baseline)
        return AnalysisResult("inconclusive", checks, baseline,
                              f"no check saw {s.min_requests} requests of version {version}")

    def _judge(self, index: int, now: datetime, current: WindowStats,
               base: WindowStats | None, drift: float | None) -> AnalysisCheck:
        s = self.settings
        if current.requests < s.min_requests:
            return AnalysisCheck(index, now, current.requests, current.error_rate,
                                 current.p99_ms, drift, "inconclusive",
                                 [f"{current.requests} requests, fewer than {s.min_requests}"])
        reasons = []
        rate = current.error_rate or 0.0
        if rate > s.max_error_rate:
            reasons.append(f"error rate {rate:.1%} of {current.requests} requests above "
                           f"{s.max_error_rate:.1%}")
        p99 = current.p99_ms
        if p99 is not None:
            limits = []
            if base is not None and base.p99_ms is not None and base.requests >= s.min_requests:
                limits.append((max(base.p99_ms * s.max_p99_ratio,
                                   base.p99_ms + s.latency_slack_ms),
                               f"the previous version's p99 {base.p99_ms:.1f} ms"))
            if s.max_p99_ms is not None:
                limits.append((s.max_p99_ms, "the ceiling"))
            for limit, why in limits:
                if p99 > limit:
                    reasons.append(f"p99 {p99:.1f} ms above {limit:.1f} ms ({why})")
        if drift is not None and drift > s.max_prediction_psi:
            reasons.append(f"prediction PSI {drift:.3f} against the baseline above "
                           f"{s.max_prediction_psi:g}")
        return AnalysisCheck(index, now, current.requests, current.error_rate, p99, drift,
                             "failed" if reasons else "passed", reasons)

