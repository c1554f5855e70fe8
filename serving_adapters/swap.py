"""The verified swap: deploy, verify, promote, drain, watch, and roll back by itself.

``Deployer`` is the one path every change to serving takes (the CLI, the API, the
feedback loop): a version takes traffic only after it passed its warm-up, the previous
version stays deployed while the new one is watched so a rollback is instant, and every
step is a row in ``deployments`` with who or what did it. After a swap the version it
replaced stays deployed, idle, so that rolling back never waits for a deploy; older ones
are retired.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from telemetry.clock import utc_now

from .analysis import AnalysisCheck, AnalysisResult, PostDeployAnalysis
from .base import ModelPackage, ServingAdapter
from .deployments import DeploymentLog
from .errors import ServingError
from .verify import Verification, Verifier

__all__ = ["AUTOMATIC_ACTOR", "Deployer", "SwapResult"]

AUTOMATIC_ACTOR = "watchloop:analysis"
Outcome = Literal["promoted", "rejected", "rolled_back", "failed"]


@dataclass
class SwapResult:
    """What happened to one version, and how long each step took (seconds)."""

    model: str
    version: str
    previous: str | None
    outcome: Outcome
    reason: str = ""
    verification: Verification | None = None
    analysis: AnalysisResult | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary for the CLI and the API."""
        return {
            "model": self.model, "version": self.version, "previous": self.previous,
            "outcome": self.outcome, "reason": self.reason,
            "verification": self.verification.as_dict() if self.verification else None,
            "analysis": self.analysis.as_dict() if self.analysis else None,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


class Deployer:
    """Moves a model's traffic between versions on one serving backend, verified and
    watched. ``analysis`` None skips the watch (a promotion is then final at once)."""

    def __init__(self, adapter: ServingAdapter, log: DeploymentLog, verifier: Verifier,
                 analysis: PostDeployAnalysis | None = None, *, keep_previous: bool = True,
                 progress: Callable[[str], None] | None = None) -> None:
        self.adapter = adapter
        self.log = log
        self.verifier = verifier
        self.analysis = analysis
        self.keep_previous = keep_previous
        self.progress = progress or (lambda _message: None)

    def deploy(self, package: ModelPackage, actor: str, *, watch: bool = True) -> SwapResult:
        """Deploy a new version beside the serving one, then verify, promote and watch it."""
        model, version = package.model, package.version
        previous = self.adapter.serving_version(model)
        result = SwapResult(model, version, previous, "failed")
        self.progress(f"deploying {model} version {version} to {self.adapter.backend} at "
                      f"{self.adapter.address}")
        started = time.perf_counter()
        try:
            self.adapter.deploy(package)
        except ServingError as exc:
            result.reason = str(exc)
            self._record(result, "deploy", "failed", actor, result.reason)
            return result
        result.timings["deploy_s"] = time.perf_counter() - started
        self._record(result, "deploy", "ok", actor, details={"features": package.features})
        return self._verify_and_promote(result, package.features, actor, watch)

    def promote(self, model: str, version: str, features: tuple[str, ...], actor: str, *,
                watch: bool = True) -> SwapResult:
        """Verify and promote a version that is already deployed (and not serving)."""
        previous = self.adapter.serving_version(model)
        result = SwapResult(model, version, previous, "failed")
        if previous == version:
            result.reason = f"version {version} is already serving"
            return result
        return self._verify_and_promote(result, features, actor, watch)

    def rollback(self, model: str, actor: str, *, to: str | None = None, reason: str = "",
                 retire_bad: bool = False) -> SwapResult:
        """Give the traffic back to ``to`` (default: the version that served before)."""
        current = self.adapter.serving_version(model)
        target = to or self.log.previous_serving(model, current)
        result = SwapResult(model, target or "", current, "failed")
        if target is None or target == current:
            result.reason = (f"no earlier version of {model} to roll back to"
                             if target is None else f"version {target} is already serving")
            return result
        self.progress(f"rolling {model} back from version {current} to {target}: {reason}")
        started = time.perf_counter()
        try:
            self.adapter.promote(model, target)
            if current:
                self.adapter.drain(model, current)
        except ServingError as exc:
            result.reason = str(exc)
            self._record(result, "rollback", "failed", actor, result.reason, {"from": current})
            return result
        result.timings["rollback_s"] = time.perf_counter() - started
        result.outcome, result.reason = "rolled_back", reason
        self._record(result, "rollback", "ok", actor, reason, {"from": current})
        if retire_bad and current:
            self._retire(model, current, actor, f"rolled back: {reason}")
        return result

    def retire(self, model: str, version: str, actor: str, reason: str = "") -> None:
        """Unload a version that takes no traffic (``ServingError`` if it serves)."""
        self._retire(model, version, actor, reason, quiet=False)

    # -- the steps ----------------------------------------------------------------------

    def _verify_and_promote(self, result: SwapResult, features: tuple[str, ...], actor: str,
                            watch: bool) -> SwapResult:
        model, version, previous = result.model, result.version, result.previous
        self.progress(f"verifying {model} version {version}")
        started = time.perf_counter()
        verification = self.verifier.verify(model, version, features, previous)
        result.verification = verification
        result.timings["verify_s"] = time.perf_counter() - started
        if not verification.passed:
            result.outcome, result.reason = "rejected", verification.reason
            self._record(result, "verify", "failed", actor, verification.reason,
                         verification.as_dict())
            self._retire(model, version, actor, f"failed verification: {verification.reason}")
            return result
        self._record(result, "verify", "ok", actor, details=verification.as_dict())
        self.progress(f"promoting {model} version {version}"
                      + (f" (was {previous})" if previous else ""))
        started = time.perf_counter()
        try:
            self.adapter.promote(model, version)
        except ServingError as exc:
            result.reason = str(exc)
            self._record(result, "promote", "failed", actor, result.reason)
            return result
        promoted_at = utc_now()
        result.timings["promote_s"] = time.perf_counter() - started
        self._record(result, "promote", "ok", actor, details={"from": previous})
        result.outcome = "promoted"
        if previous:
            started = time.perf_counter()
            self.adapter.drain(model, previous)
            result.timings["drain_s"] = time.perf_counter() - started
        if watch and self.analysis is not None:
            return self._watch(result, promoted_at)
        self._retire_older(model, version, previous, actor)
        return result

    def _watch(self, result: SwapResult, promoted_at: Any) -> SwapResult:
        model, version, previous = result.model, result.version, result.previous
        assert self.analysis is not None
        settings = self.analysis.settings
        self.progress(f"watching {model} version {version}: {settings.checks} checks every "
                      f"{settings.interval_s:g} s, rolled back after {settings.failure_limit} "
                      "failed")

        def report(check: AnalysisCheck) -> None:
            detail = "; ".join(check.reasons) or "within limits"
            self.progress(f"  check {check.index}: {check.verdict} ({check.requests} requests; "
                          f"{detail})")

        started = time.perf_counter()
        analysis = self.analysis.run(model, version, previous, promoted_at, report)
        result.analysis = analysis
        result.timings["watch_s"] = time.perf_counter() - started
        self._record(result, "watch", analysis.outcome, AUTOMATIC_ACTOR, analysis.reason,
                     analysis.as_dict())
        if analysis.outcome == "failed" and previous:
            rolled = self.rollback(model, AUTOMATIC_ACTOR, to=previous, reason=analysis.reason,
                                   retire_bad=True)
            result.outcome = "rolled_back" if rolled.outcome == "rolled_back" else "failed"
            result.reason = analysis.reason if rolled.outcome == "rolled_back" else rolled.reason
            result.timings.update(rolled.timings)
            return result
        if analysis.outcome == "succeeded":
            self._retire_older(model, version, previous, AUTOMATIC_ACTOR)
        return result

    def _retire_older(self, model: str, version: str, previous: str | None,
                      actor: str) -> None:
        """Retire every version but the serving one and (if kept) the one it replaced."""
        keep = {version} | ({previous} if previous and self.keep_previous else set())
        for info in self.adapter.versions(model):
            if info.version not in keep and not info.serving:
                self._retire(model, info.version, actor, f"replaced by version {version}")

    def _retire(self, model: str, version: str, actor: str, reason: str,
                quiet: bool = True) -> None:
        try:
            self.adapter.retire(model, version)
        except ServingError as exc:
            self.log.record(model, version, self.adapter.backend, "retire", "failed", actor,
                            str(exc))
            if not quiet:
                raise
            return
        self.log.record(model, version, self.adapter.backend, "retire", "ok", actor, reason)

    def _record(self, result: SwapResult, action: str, status: str, actor: str,
                reason: str = "", details: dict[str, Any] | None = None) -> None:
        self.log.record(result.model, result.version, self.adapter.backend, action, status,
                        actor, reason, {"server": self.adapter.address, **(details or {})})
