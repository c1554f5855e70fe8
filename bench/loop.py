"""The feedback loop end to end: seconds from injected drift to the new version serving.

Starts a private Redis, an MLflow server (sqlite) and TorchServe on loopback ports, over an
in-memory store. Version 1 of the demo fraud model is trained by hand on three hours of
pre-drift history and deployed (the baseline: one retraining without detection or alert,
measured in the same run). Then 90 minutes of drifted, labelled traffic is written to the
store (the injection), and the loop is left to close: the drift monitor runs, the alert
evaluator fires ``FeatureDrift`` to the retrain receiver, which runs the retraining, the
gate and the verified swap. Traffic goes into the store directly, not through the server:
this measures the loop, not the payload-logging path (``bench.swap`` and ``bench.ingest``
measure those).

Prints one JSON line: ``total_s`` (injection to the new version serving), ``stages``
(detect, alert, data, train, register, gate, deploy, verify), ``bootstrap_s`` (the baseline
retraining), ``rows`` trained on, and ``aim_s`` (180) with ``ratio_to_aim``.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import timedelta
from typing import Any

from ._common import emit_result, log, temporary_directory

AIM_S = 180.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000,
                        help="transactions before and after the drift (default 3000 each)")
    args = parser.parse_args(argv)
    emit_result(run(args.rows))


def run(rows: int) -> dict[str, Any]:
    import redis

    from alerts.evaluator import AlertEvaluator
    from alerts.routing import RetrainReceiver
    from alerts.settings import AlertsSettings
    from alerts.sinks import build_sink
    from drift import MonitorRunner
    from drift.settings import DriftSettings, MonitorSettings
    from feedback import FeedbackLoop, FeedbackSettings, ModelRegistry, RetrainPolicy
    from feedback.demo_model import Transactions, store_traffic
    from serving_adapters import (
        Deployer,
        DeploymentLog,
        RecentRequests,
        TorchServeAdapter,
        TorchServeSettings,
        Verifier,
        VerifySettings,
    )
    from telemetry import Migrator, open_store
    from telemetry.clock import utc_now
    from watchloop.services import MlflowServer, RedisServer, TorchServeServer

    with temporary_directory("watchloop-bench-loop-") as workdir:
        servers = [RedisServer(workdir / "redis"), MlflowServer(workdir / "mlflow"),
                   TorchServeServer(workdir / "torchserve")]
        try:
            for server in servers:
                log(f"starting {server.name}")
                server.start(timeout=180)
            redis_server, mlflow_server, torchserve = servers
            store = open_store(f"chdb://memory?database=bench_loop_{uuid.uuid4().hex[:8]}")
            Migrator(store).migrate()
            client = redis.Redis.from_url(redis_server.url)
            adapter = TorchServeAdapter(TorchServeSettings(
                inference_url=torchserve.inference_url,
                management_url=torchserve.management_url, metrics_url=torchserve.metrics_url,
                model_store=torchserve.model_store, timeout_s=30))
            deployer = Deployer(adapter, DeploymentLog(store), Verifier(
                adapter, VerifySettings(latency_budget_ms=2000), RecentRequests(store)))
            now = utc_now()
            clock_at = [now - timedelta(hours=3)]
            settings = FeedbackSettings.model_validate({
                "watch": False, "policy": {"min_fresh_labels": 500},
                "training": {"window": "2h", "holdout": "30m", "params": {"epochs": 15}},
                "gate": {"min_rows": 200, "min_absolute_improvement": 0.01}})
            loop = FeedbackLoop(
                settings, store, RetrainPolicy(client, clock=lambda: clock_at[0]),
                ModelRegistry(mlflow_server.tracking_uri), deployer,
                run_root=workdir / "runs", redis=client, clock=lambda: clock_at[0],
                progress=log)
            world = Transactions(11)
            x, y = world.sample(rows, drift=0.0)
            store_traffic(store, "fraud", "0", x, y, now - timedelta(hours=5),
                          now - timedelta(hours=3))
            started = time.perf_counter()
            first = loop.retrain("fraud", kind="manual", actor="bench", reason="bootstrap",
                                 force=True)
            bootstrap_s = time.perf_counter() - started
            if first.outcome != "promoted":
                raise SystemExit(f"bench.loop: the bootstrap did not promote: {first.reason}")

            log("injecting drift")
            injected = time.perf_counter()
            x, y = world.sample(rows, drift=1.0)
            store_traffic(store, "fraud", "1", x, y, now - timedelta(minutes=90),
                          utc_now() - timedelta(seconds=1))
            clock_at[0] = utc_now()
            stages: dict[str, float] = {}
            mark = time.perf_counter()
            MonitorRunner(MonitorSettings(drift=DriftSettings(window=timedelta(hours=1))),
                          store, clock=lambda: clock_at[0]).run_once(clock_at[0])
            stages["detect"] = time.perf_counter() - mark
            trigger = _Timed(loop, stages)
            evaluator = AlertEvaluator(AlertsSettings.model_validate({
                "rules": [{"name": "FeatureDrift", "interval": "1m", "threshold": {
                    "series": {"source": "drift", "metric": "__dataset__", "model": "fraud"},
                    "op": ">", "value": 0.3}}],
                "receivers": [{"type": "retrain", "name": "retrain"}],
                "route": {"receivers": ["retrain"]}}), store, client,
                {"retrain": build_sink(RetrainReceiver(type="retrain", name="retrain"),
                                       retrain=trigger)}, holder="bench")
            trigger.began = time.perf_counter()
            evaluator.tick(clock_at[0])
            evaluator.outbox.deliver(block_ms=0)
            result = stages.pop("_result")
            total_s = time.perf_counter() - injected
            serving = adapter.serving_version("fraud")
            if result.outcome != "promoted" or serving != result.version:
                raise SystemExit(f"bench.loop: the loop did not close: {result.summary()}")
            stages["alert"] = stages.pop("_delivered")  # rule evaluation to the trigger
            stages.update({k: v for k, v in result.stages.items()
                           if k in ("data", "train", "register", "gate", "deploy")})
            stages["verify"] = result.stages.get("verify", 0) + result.stages.get("promote", 0)
            adapter.close()
            store.close()
            return {"total_s": round(total_s, 2),
                    "stages": {k: round(v, 2) for k, v in stages.items()},
                    "bootstrap_s": round(bootstrap_s, 2), "rows": rows,
                    "version": serving, "aim_s": AIM_S,
                    "ratio_to_aim": round(total_s / AIM_S, 3)}
        finally:
            for server in reversed(servers):
                server.stop()


class _Timed:
    """The retrain trigger, noting when the alert reached it and what the loop returned."""

    def __init__(self, loop: Any, stages: dict[str, Any]) -> None:
        self.loop = loop
        self.stages = stages
        self.began = time.perf_counter()

    def trigger(self, model: str, reason: str, *, alert: dict[str, Any]) -> None:
        self.stages["_delivered"] = time.perf_counter() - self.began
        self.stages["_result"] = self.loop.retrain(model, kind="alert", actor="alert:bench",
                                                   reason=reason, alert=alert)


if __name__ == "__main__":
    main()
