"""The feedback loop: trigger → policy → point-in-time data → run → MLflow → gate → promote.

``FeedbackLoop.retrain`` carries one retraining through, synchronously, each step a row in
``lineage``: the alert that caused it (if one did), the trigger and the policy's decision,
the run (its data window, row count and checksum, its log), the registered version and the
challenger alias, the gate's numbers, then the verified swap through the serving adapter's
``Deployer`` (its deploy, verify, promote and watch rows are in ``deployments``), and the
champion alias moved to the new version once it serves. A run that fails or times out is
recorded as failed in MLflow and in the lineage, sets the ``retrain_failed`` series (which
the generated ``RetrainFailed`` alert rule watches) and promotes nothing.

``promote`` and ``rollback`` move the champion alias with the traffic; ``sync_champion``
deploys a champion alias moved by hand in MLflow through the same verified path.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from drift.builder import ProfileBuilder
from drift.repository import ProfileRepository
from serving_adapters import ModelPackage
from serving_adapters.swap import Deployer, SwapResult
from telemetry.clock import utc_now
from telemetry.errors import StoreError
from telemetry.store import Store

from .dataset import DataWindow, count_labelled, read_rows, rows_checksum
from .gate import GateResult, evaluate_gate, score
from .lineage import LineageLog
from .policy import Decision, RetrainPolicy, RunLease
from .registry import CHAMPION, ModelRegistry, RegistryError
from .runner import RunResult, TrainingRunner
from .settings import FeedbackSettings
from .training import TrainingSpec

__all__ = ["FAILED_METRIC", "FeedbackLoop", "LoopResult"]

log = logging.getLogger("watchloop.feedback")

FAILED_METRIC = "retrain_failed"  # monitor_results: monitor "feedback", 1 after a failed run
TriggerKind = Literal["alert", "manual", "schedule"]
Outcome = Literal["refused", "failed", "rejected", "promoted", "rolled_back", "registered"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class LoopResult:
    """How one retraining ended, and the time each stage took (seconds)."""

    model: str
    trigger_id: str
    outcome: Outcome
    reason: str = ""
    decision: Decision | None = None
    version: str | None = None
    mlflow_run: str | None = None
    gate: GateResult | None = None
    swap: SwapResult | None = None
    run: RunResult | None = None
    stages: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "trigger_id": self.trigger_id, "outcome": self.outcome,
                "reason": self.reason, "version": self.version,
                "mlflow_run": self.mlflow_run,
                "decision": self.decision.as_dict() if self.decision else None,
                "gate": self.gate.as_dict() if self.gate else None,
                "swap": self.swap.summary() if self.swap else None,
                "stages": {k: round(v, 3) for k, v in self.stages.items()}}


class FeedbackLoop:
    """Retrains, judges and promotes the models of one serving backend."""

    def __init__(self, settings: FeedbackSettings, store: Store, policy: RetrainPolicy,
                 registry: ModelRegistry, deployer: Deployer | None, *, run_root: Path,
                 redis: Any, payload_log: dict[str, Any] | None = None,
                 lineage: LineageLog | None = None,
                 clock: Callable[[], datetime] = utc_now,
                 progress: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.policy = policy
        self.registry = registry
        self.deployer = deployer
        self.run_root = run_root
        self._redis = redis
        self.payload_log = payload_log
        self.lineage = lineage or LineageLog(store)
        self.clock = clock
        self.progress = progress or (lambda _message: None)

    # -- triggers -------------------------------------------------------------------------

    def trigger(self, model: str, reason: str, *, alert: dict[str, Any]) -> None:
        """``alerts.sinks.RetrainTrigger``: an alert fired for ``model``."""
        name = alert.get("labels", {}).get("alertname", "alert")
        self.retrain(model, kind="alert", actor=f"alert:{name}", reason=reason, alert=alert)

    def retrain(self, model: str, *, kind: TriggerKind, actor: str, reason: str,
                alert: dict[str, Any] | None = None, force: bool = False) -> LoopResult:
        """One retraining, from the trigger to the champion alias (see module docs)."""
        trigger_id = uuid.uuid4().hex[:12]
        result = LoopResult(model, trigger_id, "refused")
        if alert is not None:
            self.lineage.record(model, trigger_id, "alert", alert.get("status", "firing"),
                                actor=actor, reason=reason, ref=alert.get("fingerprint", ""),
                                details={k: alert.get(k) for k in
                                         ("labels", "value", "starts_at", "annotations")})
        policy, training, _gate = self.settings.for_model(model)
        as_of = self.clock()
        champion = self.registry.alias(model, CHAMPION)
        cutoff = self._cutoff(model, champion)
        fresh = count_labelled(self.store, DataWindow(model, cutoff or _EPOCH, as_of, as_of))
        decision, lease = self.policy.acquire(model, policy, fresh_labels=fresh, force=force)
        result.decision = decision
        self.lineage.record(model, trigger_id, "trigger",
                            "accepted" if decision.accepted else "refused", actor=actor,
                            reason=reason if decision.accepted else decision.reason,
                            ref=decision.run_id,
                            details={"kind": kind, "rule": decision.rule, "force": force,
                                     "fresh_labels": fresh, "champion": champion,
                                     "as_of": as_of.isoformat()})
        if lease is None:
            result.reason = f"refused by {decision.rule}: {decision.reason}"
            self.progress(f"retrain {model}: {result.reason}")
            return result
        keeper = _LeaseKeeper(lease)
        keeper.start()
        try:
            return self._retrain(result, decision.run_id, as_of, champion, keeper, actor,
                                 kind, reason)
        finally:
            keeper.stop()
            lease.release()

    # -- the steps --------------------------------------------------------------------------

    def _retrain(self, result: LoopResult, run_id: str, as_of: datetime,
                 champion: str | None, keeper: _LeaseKeeper, actor: str, kind: str,
                 reason: str) -> LoopResult:
        model, trigger_id = result.model, result.trigger_id
        _policy, training, gate_settings = self.settings.for_model(model)
        end = as_of - training.holdout
        window = DataWindow(model, end - training.window, end, as_of)
        clock = _Stopwatch(result.stages)
        with clock("data"):
            data = read_rows(self.store, window)
            checksum = rows_checksum(data)
        features = self.registry.features(model, champion) if champion else ()
        spec = TrainingSpec(model, run_id, window.as_dict(), len(data), checksum, features,
                            dict(training.params))
        run_dir = self.run_root / run_id
        self.progress(f"retrain {model}: run {run_id} on {len(data)} rows "
                      f"({window.start:%Y-%m-%d %H:%M} to {window.end:%H:%M}, as of "
                      f"{as_of:%H:%M:%S})")
        mlflow_run = self.registry.start_run(model, run_id, {
            "watchloop.trigger": kind, "watchloop.trigger_id": trigger_id,
            "watchloop.actor": actor, "watchloop.reason": reason})
        result.mlflow_run = mlflow_run
        self.registry.log_params(mlflow_run, {
            **{f"param.{k}": v for k, v in training.params.items()},
            "data.start": window.as_dict()["start"], "data.end": window.as_dict()["end"],
            "data.as_of": window.as_dict()["as_of"], "data.rows": len(data),
            "data.checksum": checksum,
            "entrypoint": " ".join(training.command) if training.command
            else training.entrypoint})
        run_details = {**window.as_dict(), "rows": len(data), "checksum": checksum,
                       "run_dir": str(run_dir)}
        self.lineage.record(model, trigger_id, "run", "started", actor=actor, ref=mlflow_run,
                            details=run_details)
        runner = TrainingRunner(entrypoint=training.entrypoint, command=training.command,
                                timeout_s=training.timeout.total_seconds())
        with clock("train"):
            run = runner.run(spec, data, run_dir, heartbeat=keeper.alive)
        result.run = run
        self.registry.log_artifact(mlflow_run, run.log_file)
        if run.status != "succeeded":
            return self._failed(result, run, run_details, actor)
        self.registry.log_metrics(mlflow_run, run.metrics)
        self._failed_series(model, 0.0, run.reason)
        with clock("register"):
            version = self.registry.register(model, mlflow_run, run.model_file, run.features, {
                "watchloop.trigger_id": trigger_id, "watchloop.train_start":
                window.as_dict()["start"], "watchloop.train_end": window.as_dict()["end"],
                "watchloop.as_of": window.as_dict()["as_of"],
                "watchloop.rows": str(len(data)), "watchloop.checksum": checksum})
            self._save_profile(model, version, data, run)
        result.version = version
        self.registry.end_run(mlflow_run, "FINISHED")
        self.lineage.record(model, trigger_id, "run", "succeeded", actor=actor,
                            version=version, ref=mlflow_run,
                            details={**run_details, "seconds": round(run.seconds, 3),
                                     "metrics": run.metrics})
        self.lineage.record(model, trigger_id, "register", "ok", actor=actor,
                            version=version, ref=mlflow_run,
                            details={"alias": "challenger", "features": run.features})
        self.progress(f"retrain {model}: registered version {version} (challenger)")
        with clock("gate"):
            gate = self._gate(model, version, run, champion, end, gate_settings, run_dir)
        result.gate = gate
        self.registry.set_tags(model, version, gate.tags())
        self.lineage.record(model, trigger_id, "gate", "passed" if gate.passed else "failed",
                            actor=actor, version=version, reason=gate.reason,
                            details=gate.as_dict())
        self.progress(f"retrain {model}: gate {'passed' if gate.passed else 'failed'}: "
                      f"{gate.reason}")
        if not gate.passed:
            result.outcome, result.reason = "rejected", f"gate: {gate.reason}"
            return result
        if self.deployer is None:
            result.outcome, result.reason = "registered", "no serving backend configured"
            return result
        with clock("deploy"):
            swap = self._deploy(model, version, run.model_file, run.features, actor,
                                trigger_id, reason=f"passed the gate: {gate.reason}")
        result.swap = swap
        for name in ("deploy_s", "verify_s", "promote_s", "watch_s"):
            if name in swap.timings:
                result.stages[name.removesuffix("_s")] = swap.timings[name]
        result.outcome = {"promoted": "promoted", "rolled_back": "rolled_back"}.get(
            swap.outcome, "rejected")
        result.reason = swap.reason
        return result

    def _failed(self, result: LoopResult, run: RunResult, details: dict[str, Any],
                actor: str) -> LoopResult:
        model = result.model
        assert result.mlflow_run is not None
        self.registry.end_run(result.mlflow_run, "KILLED" if run.status == "timed_out"
                              else "FAILED")
        self.lineage.record(model, result.trigger_id, "run", run.status, actor=actor,
                            reason=run.reason, ref=result.mlflow_run,
                            details={**details, "seconds": round(run.seconds, 3),
                                     "log_tail": run.log_tail(30)})
        self._failed_series(model, 1.0, run.reason)
        result.outcome, result.reason = "failed", f"run {run.status}: {run.reason}"
        self.progress(f"retrain {model}: {result.reason}")
        return result

    def _gate(self, model: str, version: str, run: RunResult, champion: str | None,
              trained_until: datetime, settings: Any, run_dir: Path) -> GateResult:
        now = self.clock()
        rows = read_rows(self.store, DataWindow(model, trained_until, now, now))
        champion_file = (self.registry.save_torchscript(model, champion,
                                                        run_dir / "champion.pt")
                         if champion else None)
        champion_features = self.registry.features(model, champion) if champion else ()
        return evaluate_gate(rows, run.model_file, run.features, champion_file,
                             champion_features, settings)

    def _save_profile(self, model: str, version: str, data: Any, run: RunResult) -> None:
        """The version's reference profile, from its training rows and its own scores."""
        frame = data[list(run.features)].copy()
        frame["prediction"] = score(run.model_file, data, run.features)
        frame["label"] = data["label"].to_numpy()
        profile = ProfileBuilder().from_frame(frame, model, version, prediction="prediction",
                                              label="label", task="classification")
        ProfileRepository(self.store).save(profile)
        path = run.run_dir / "reference_profile.json"
        path.write_text(profile.to_json())
        assert self.registry is not None
        self.registry.log_artifact(self.registry.run_of(model, version), path)

    # -- promotion and rollback -------------------------------------------------------------

    def promote(self, model: str, version: str, actor: str, *,
                reason: str = "promoted by hand") -> SwapResult:
        """Deploy a registered version through the verified path; the champion alias
        follows the traffic."""
        file = self.registry.save_torchscript(model, version,
                                              self.run_root / "versions" / model / f"{version}.pt")
        trigger_id = self.registry.tags(model, version).get("watchloop.trigger_id") \
            or f"promote-{uuid.uuid4().hex[:8]}"
        return self._deploy(model, version, file, self.registry.features(model, version),
                            actor, trigger_id, reason=reason)

    def _deploy(self, model: str, version: str, model_file: Path, features: tuple[str, ...],
                actor: str, trigger_id: str, *, reason: str) -> SwapResult:
        if self.deployer is None:
            raise RuntimeError("no serving backend configured (the serving: section)")
        standby = [v for v in self.deployer.adapter.versions(model)
                   if v.version == version and not v.serving]
        if standby:  # still deployed (the version a swap replaced): verify and promote it
            swap = self.deployer.promote(model, version, tuple(features), actor,
                                         watch=self.settings.watch)
        else:
            package = ModelPackage(model, version, model_file, tuple(features),
                                   self.payload_log)
            swap = self.deployer.deploy(package, actor, watch=self.settings.watch)
        if swap.verification is not None:
            self.registry.set_tags(model, version, {
                "watchloop.gate.warmup_p99_ms": swap.verification.p99_ms or "",
                "watchloop.gate.verified": str(swap.verification.passed).lower()})
        if swap.outcome == "promoted":
            self._move_champion(model, version, actor, trigger_id, reason, swap.previous)
        return swap

    def rollback(self, model: str, actor: str, *, reason: str = "rolled back by hand",
                 to: str | None = None) -> SwapResult:
        """Give the traffic back to the previous version; the champion alias follows."""
        if self.deployer is None:
            raise RuntimeError("no serving backend configured (the serving: section)")
        swap = self.deployer.rollback(model, actor, to=to, reason=reason)
        if swap.outcome == "rolled_back":
            bad = swap.previous or ""
            trigger_id = (self._trigger_of(model, bad) if bad else "") \
                or f"rollback-{uuid.uuid4().hex[:8]}"
            self._move_champion(model, swap.version, actor, trigger_id, reason, bad)
        return swap

    def _move_champion(self, model: str, version: str, actor: str, trigger_id: str,
                       reason: str, previous: str | None) -> None:
        self.registry.set_alias(model, CHAMPION, version)
        self._redis.set(self._known_key(model), version)
        self.lineage.record(model, trigger_id, "alias", "ok", actor=actor, version=version,
                            reason=reason, details={"alias": CHAMPION, "from": previous})
        self.progress(f"{model}: champion is version {version}"
                      + (f" (was {previous})" if previous else ""))

    def sync_champion(self, model: str) -> SwapResult | None:
        """Deploy the champion alias if someone moved it in MLflow (not Watchloop); None
        when it points where Watchloop left it."""
        if self.deployer is None:
            return None
        champion = self.registry.alias(model, CHAMPION)
        known = self._redis.get(self._known_key(model))
        known = known.decode() if isinstance(known, bytes) else known
        if champion is None or champion == known:
            return None
        serving = self.deployer.adapter.serving_version(model)
        self._redis.set(self._known_key(model), champion)
        if champion == serving:
            return None
        actor = "mlflow:alias"
        trigger_id = f"alias-{uuid.uuid4().hex[:8]}"
        reason = (f"champion alias moved to version {champion} in MLflow outside Watchloop "
                  f"(serving: {serving})")
        self.lineage.record(model, trigger_id, "alias", "moved", actor=actor, version=champion,
                            reason=reason, details={"alias": CHAMPION, "from": known})
        self.progress(f"{model}: {reason}; deploying it")
        swap = self.promote(model, champion, actor, reason=reason)
        if swap.outcome != "promoted" and serving:
            # the verified path refused it: the alias goes back to what serves
            self.registry.set_alias(model, CHAMPION, serving)
            self._redis.set(self._known_key(model), serving)
            self.lineage.record(model, trigger_id, "alias", "reverted", actor=actor,
                                version=serving, reason=f"version {champion}: {swap.reason}",
                                details={"alias": CHAMPION, "from": champion})
        return swap

    # -- helpers ------------------------------------------------------------------------------

    def _known_key(self, model: str) -> str:
        return f"{self.settings.prefix}:feedback:{model}:champion"

    def _cutoff(self, model: str, champion: str | None) -> datetime | None:
        if champion is None:
            return None
        text = self.registry.tags(model, champion).get("watchloop.train_end")
        return datetime.fromisoformat(text) if text else None

    def _trigger_of(self, model: str, version: str) -> str:
        try:
            return self.registry.tags(model, version).get("watchloop.trigger_id", "")
        except RegistryError:
            return ""

    def _failed_series(self, model: str, value: float, reason: str) -> None:
        now = self.clock()
        try:
            self.store.insert("monitor_results", [[
                now, now, "feedback", model, "", now - timedelta(seconds=1), now,
                FAILED_METRIC, value, {}]],
                ["ts", "ingest_time", "monitor", "model", "model_version", "window_start",
                 "window_end", "metric", "value", "labels"])
        except StoreError as exc:
            log.error("feedback: recording %s for %s failed: %s", FAILED_METRIC, model, exc)


class _LeaseKeeper:
    """Renews a run's lease in the background; ``alive`` turns False once it is lost."""

    def __init__(self, lease: RunLease) -> None:
        self._lease = lease
        self._stop = threading.Event()
        self._lost = False
        self._thread = threading.Thread(target=self._loop, name="retrain-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def alive(self) -> bool:
        return not self._lost

    def _loop(self) -> None:
        interval = max(0.05, self._lease.ttl_ms / 3000)
        while not self._stop.wait(interval):
            try:
                if not self._lease.renew():
                    self._lost = True
                    return
            except Exception as exc:  # noqa: BLE001 - Redis down: keep trying until it lapses
                log.warning("feedback: renewing lease of %s: %s", self._lease.run_id, exc)


class _Stopwatch:
    """``with clock("train"):`` adds the block's seconds to ``stages["train"]``."""

    def __init__(self, stages: dict[str, float]) -> None:
        self._stages = stages

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._stages[name] = self._stages.get(name, 0.0) + time.perf_counter() - started
