"""The warm-up a deployed version must pass before it takes traffic.

It answers; every answer has one finite score per instance, within the configured range;
the p99 of the warm-up requests is within the latency budget. Then, when the store holds
recent traffic, the model's last N logged requests (point-in-time: as the store knew them
at the swap) are replayed to the candidate and to the serving version, and their
agreement rate and mean score shift are reported, and refused beyond configured limits:
a scientist sees how the new version would have answered today's traffic before it serves.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from telemetry.clock import utc_now
from telemetry.errors import StoreError

from .base import Prediction, ServingAdapter
from .errors import PredictionError
from .observations import RecentRequests
from .runtime import VERIFY_PREFIX
from .settings import VerifySettings

__all__ = ["Check", "Verification", "Verifier"]

_UNTIMED = 3  # first requests load lazily (TorchScript's profiling runs); not timed


@dataclass(frozen=True)
class Check:
    """One test of the warm-up, and what it found."""

    name: str  # answers, shape, range, latency, agreement, shift
    passed: bool
    detail: str


@dataclass(frozen=True)
class Verification:
    """The warm-up's verdict on a version, with its evidence."""

    model: str
    version: str
    serving: str | None
    checks: list[Check]
    warmup_requests: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    replayed: int = 0
    agreement: float | None = None
    mean_shift: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def reason(self) -> str:
        """Why it failed, check by check; empty when it passed."""
        return "; ".join(f"{c.name}: {c.detail}" for c in self.checks if not c.passed)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


class Verifier:
    """Warms and checks a candidate version through a ``ServingAdapter``."""

    def __init__(self, adapter: ServingAdapter, settings: VerifySettings,
                 recent: RecentRequests | None = None,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.adapter = adapter
        self.settings = settings
        self.recent = recent
        self.clock = clock

    def verify(self, model: str, version: str, features: tuple[str, ...],
               serving: str | None) -> Verification:
        """Warm ``version`` and check it against the settings, and against ``serving`` (the
        version now taking traffic) on replayed requests."""
        s = self.settings
        replay = self._replay_instances(model) if serving and serving != version else []
        pool = replay or _synthetic(features, max(s.batch_size, 32))
        checks: list[Check] = []
        latencies: list[float] = []
        answers: list[tuple[int, Prediction]] = []
        n = s.warmup_requests + _UNTIMED
        for i in range(n):
            batch = [_fresh(pool[(i * s.batch_size + j) % len(pool)]) for j in range(s.batch_size)]
            try:
                answer = self.adapter.predict(model, batch, version=version)
            except PredictionError as exc:
                checks.append(Check("answers", False, f"request {i + 1} of {n} failed: {exc}"))
                return Verification(model, version, serving, checks, warmup_requests=i)
            if i >= _UNTIMED:
                latencies.append(answer.latency_ms)
            answers.append((len(batch), answer))
        checks.append(Check("answers", True, f"{n} of {n} requests answered"))
        checks.append(_shape(answers, version))
        checks.append(self._range(answers))
        latencies.sort()
        p50, p99 = _quantile(latencies, 0.5), _quantile(latencies, 0.99)
        checks.append(Check("latency", p99 <= s.latency_budget_ms,
                            f"p99 {p99:.1f} ms over {len(latencies)} requests, budget "
                            f"{s.latency_budget_ms:g} ms"))
        result = Verification(model, version, serving, checks, warmup_requests=n,
                              p50_ms=p50, p99_ms=p99)
        if not replay or not result.passed:
            return result
        return self._compare(result, replay)

    def _compare(self, result: Verification, replay: list[dict[str, Any]]) -> Verification:
        s = self.settings
        candidate, serving = [], []
        try:
            for start in range(0, len(replay), 50):
                batch = [_fresh(r) for r in replay[start:start + 50]]
                candidate += self.adapter.predict(result.model, batch, result.version).scores
                serving += self.adapter.predict(result.model, batch, result.serving).scores
        except PredictionError as exc:
            checks = [*result.checks, Check("replay", False, f"a replayed request failed: {exc}")]
            return replace(result, checks=checks)
        agree = sum((c >= s.decision_threshold) == (o >= s.decision_threshold)
                    for c, o in zip(candidate, serving, strict=True)) / len(candidate)
        shift = sum(c - o for c, o in zip(candidate, serving, strict=True)) / len(candidate)
        checks = list(result.checks)
        if s.min_agreement is not None:
            checks.append(Check("agreement", agree >= s.min_agreement,
                                f"{agree:.1%} of {len(candidate)} replayed requests decided "
                                f"as version {result.serving} did; at least "
                                f"{s.min_agreement:.1%} required"))
        if s.max_mean_shift is not None:
            checks.append(Check("shift", abs(shift) <= s.max_mean_shift,
                                f"mean score shift {shift:+.4f} against version "
                                f"{result.serving}; at most ±{s.max_mean_shift:g}"))
        return replace(result, checks=checks, replayed=len(candidate), agreement=agree,
                       mean_shift=shift)

    def _range(self, answers: list[tuple[int, Prediction]]) -> Check:
        low, high = self.settings.score_min, self.settings.score_max
        scores = [x for _, a in answers for x in a.scores if math.isfinite(x)]
        outside = [x for x in scores
                   if (low is not None and x < low) or (high is not None and x > high)]
        bounds = f"[{'-inf' if low is None else f'{low:g}'}, " \
                 f"{'inf' if high is None else f'{high:g}'}]"
        if outside:
            return Check("range", False, f"{len(outside)} of {len(scores)} scores outside "
                                         f"{bounds}, e.g. {outside[0]:g}")
        return Check("range", True, f"{len(scores)} scores within {bounds}")

    def _replay_instances(self, model: str) -> list[dict[str, Any]]:
        s = self.settings
        if self.recent is None or s.replay_requests == 0:
            return []
        now = self.clock()
        try:
            return self.recent.recent(model, s.replay_requests,
                                      now - timedelta(seconds=s.replay_window_s), now)
        except StoreError:  # no replay without the store; the warm-up still stands
            return []


def _shape(answers: list[tuple[int, Prediction]], version: str) -> Check:
    for sent, answer in answers:
        if len(answer.scores) != sent:
            return Check("shape", False, f"{len(answer.scores)} scores for {sent} instances")
        if answer.version != version:
            return Check("shape", False, f"version {answer.version} answered, not {version}")
        bad = [x for x in answer.scores if not math.isfinite(x)]
        if bad:
            return Check("shape", False, f"non-finite score {bad[0]}")
    return Check("shape", True, "one finite score per instance, from the version asked")


def _quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _synthetic(features: tuple[str, ...], count: int) -> list[dict[str, Any]]:
    """Instances with features drawn uniformly from [0, 1): for a first deploy, when no
    traffic has been logged yet."""
    rng = random.Random(0)
    return [{"features": {f: rng.random() for f in features}} for _ in range(count)]


def _fresh(instance: dict[str, Any]) -> dict[str, Any]:
    # A verification request id of its own: the servers never log these as traffic.
    return {"request_id": f"{VERIFY_PREFIX}{uuid.uuid4().hex}",
            "features": instance["features"]}

