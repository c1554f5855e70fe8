"""The whole feedback loop on real parts: Redis, MLflow (sqlite and PostgreSQL backend
stores), TorchServe, the drift monitor and the alert evaluator.

Drift is injected into a model's traffic; the drift monitor sees it, the alert fires, the
retrain receiver triggers a run on point-in-time rows, MLflow registers the version, the
gate passes it, the verified swap puts it on TorchServe, it answers, and the lineage links
every step. Around that: a second trigger is refused by the cooldown, the run reproduces
from its recorded window, a champion alias moved by hand in MLflow is deployed; a run that
crashes or times out promotes nothing and raises RetrainFailed; a worse challenger stays a
challenger with the gate's reason recorded.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import mlflow
import pytest
import redis

from alerts.evaluator import AlertEvaluator
from alerts.routing import RetrainReceiver, WebhookReceiver
from alerts.settings import AlertsSettings
from alerts.sinks import build_sink
from drift import MonitorRunner
from drift.settings import DriftSettings, MonitorSettings
from feedback import (
    CHALLENGER,
    CHAMPION,
    DataWindow,
    FeedbackLoop,
    FeedbackSettings,
    ModelRegistry,
    RetrainPolicy,
    read_rows,
    retrain_failed_rule,
    rows_checksum,
)
from feedback.demo_model import FEATURES, Transactions
from feedback.demo_model import store_traffic as write_traffic
from serving_adapters import Deployer, DeploymentLog, RecentRequests, Verifier, VerifySettings
from telemetry.clock import utc_now
from tests.helpers import Receiver
from tests.serving import adapter_for, remove_model, unique_model


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def client(redis_server):
    connection = redis.Redis.from_url(redis_server.url)
    yield connection
    connection.close()


@pytest.fixture
def adapter(request):
    adapter = adapter_for("torchserve", request)
    yield adapter
    adapter.close()


def _settings(prefix: str, **training) -> FeedbackSettings:
    return FeedbackSettings.model_validate({
        "prefix": prefix, "watch": False,
        "policy": {"cooldown": "1h", "daily_budget": 5, "min_fresh_labels": 500},
        "training": {"window": "2h", "holdout": "30m", "timeout": "2m",
                     "params": {"epochs": 15}, **training},
        "gate": {"metric": "roc_auc", "min_rows": 200, "min_absolute_improvement": 0.01},
    })


class World:
    """A model with pre-drift history, a loop over real servers, and its bootstrap."""

    def __init__(self, store, client, adapter, tracking_uri: str, tmp_path: Path) -> None:
        self.store, self.client, self.adapter = store, client, adapter
        self.model = unique_model()
        self.now = utc_now()
        self.clock = Clock(self.now - timedelta(hours=3))
        self.prefix = f"t{uuid.uuid4().hex[:8]}"
        self.registry = ModelRegistry(tracking_uri, experiment=f"exp-{self.model}")
        verifier = Verifier(adapter, VerifySettings(warmup_requests=5, latency_budget_ms=2000),
                            RecentRequests(store))
        self.deployer = Deployer(adapter, DeploymentLog(store), verifier)
        self.loop = FeedbackLoop(
            _settings(self.prefix), store, RetrainPolicy(client, prefix=self.prefix,
                                                         clock=self.clock),
            self.registry, self.deployer, run_root=tmp_path / "runs", redis=client,
            clock=self.clock)
        self.world = Transactions(11)
        x, y = self.world.sample(3000, drift=0.0)
        write_traffic(store, self.model, "0", x, y, self.now - timedelta(hours=5),
                      self.now - timedelta(hours=3))

    def bootstrap(self) -> None:
        """Version 1: trained by hand as of three hours ago, deployed, the champion."""
        first = self.loop.retrain(self.model, kind="manual", actor="test:bootstrap",
                                  reason="first version", force=True)
        assert first.outcome == "promoted", first.summary()
        assert self.registry.alias(self.model, CHAMPION) == "1"

    def drift(self) -> None:
        """The last 90 minutes, served by version 1, drifted, labelled."""
        x, y = self.world.sample(3000, drift=1.0)
        write_traffic(self.store, self.model, "1", x, y, self.now - timedelta(minutes=90),
                      self.now - timedelta(seconds=1))
        self.clock.at = utc_now()


@pytest.fixture(params=["sqlite", "postgres"])
def tracking_uri(request) -> str:
    fixture = "mlflow_server" if request.param == "sqlite" else "mlflow_postgres_server"
    return request.getfixturevalue(fixture).tracking_uri


@pytest.fixture
def world(store, client, adapter, tracking_uri, tmp_path):
    made = World(store, client, adapter, tracking_uri, tmp_path)
    yield made
    remove_model(adapter, made.model)


def _evaluator(world: World, rule: dict, receiver) -> AlertEvaluator:
    settings = AlertsSettings.model_validate({
        "prefix": world.prefix, "rules": [rule], "receivers": [receiver.model_dump()],
        "route": {"receivers": [receiver.name]}})
    sinks = {receiver.name: build_sink(receiver, retrain=world.loop)}
    return AlertEvaluator(settings, world.store, world.client, sinks, holder="test")


def test_injected_drift_is_retrained_gated_promoted_and_traced(world, tmp_path):
    world.bootstrap()
    world.drift()
    monitors = MonitorSettings(drift=DriftSettings(window=timedelta(hours=1)))
    MonitorRunner(monitors, world.store, clock=world.clock).run_once(world.clock.at)
    evaluator = _evaluator(world, {
        "name": "FeatureDrift", "interval": "1m", "severity": "page",
        "threshold": {"series": {"source": "drift", "metric": "__dataset__",
                                 "model": world.model}, "op": ">", "value": 0.3},
    }, RetrainReceiver(type="retrain", name="retrain"))
    evaluator.tick(world.clock.at)
    assert evaluator.outbox.deliver(block_ms=0) == 1  # the retraining runs in the delivery

    # the new version serves and answers
    assert world.registry.alias(world.model, CHAMPION) == "2"
    assert world.registry.alias(world.model, CHALLENGER) == "2"
    assert world.adapter.serving_version(world.model) == "2"
    rng = random.Random(1)
    answer = world.adapter.predict(world.model, [
        {"request_id": uuid.uuid4().hex, "features": {f: rng.random() for f in FEATURES}}])
    assert answer.version == "2" and 0 <= answer.scores[0] <= 1

    # the lineage links every step, alert to alias, in order
    (retraining,) = world.loop.lineage.trace(world.model, version="2")
    steps = [(s["step"], s["status"]) for s in retraining.steps]
    assert steps == [("alert", "firing"), ("trigger", "accepted"), ("run", "started"),
                     ("run", "succeeded"), ("register", "ok"), ("gate", "passed"),
                     ("deploy", "ok"), ("verify", "ok"), ("promote", "ok"), ("alias", "ok")]
    alert = retraining.step("alert")
    assert alert["actor"] == "alert:FeatureDrift" and alert["ref"]
    run = retraining.step("run")
    mlflow_run = run["ref"]
    assert retraining.step("register")["ref"] == mlflow_run
    assert world.registry.run_of(world.model, "2") == mlflow_run

    # the gate's numbers are on the MLflow version, and the challenger beat the champion
    gate = retraining.step("gate")["details"]
    assert gate["challenger"] > gate["champion"] + 0.01, gate
    tags = world.registry.tags(world.model, "2")
    assert tags["watchloop.gate.passed"] == "true"
    assert float(tags["watchloop.gate.challenger"]) == pytest.approx(gate["challenger"],
                                                                     rel=1e-4)
    assert float(tags["watchloop.gate.warmup_p99_ms"]) > 0
    logged = mlflow.MlflowClient(world.registry.tracking_uri).get_run(mlflow_run)
    assert logged.data.params["data.checksum"] == run["details"]["checksum"]
    assert logged.info.status == "FINISHED"
    assert "train_roc_auc" in logged.data.metrics

    # a second trigger within the cooldown starts nothing and says why
    again = world.loop.retrain(world.model, kind="manual", actor="test", reason="again")
    assert (again.outcome, again.decision.rule) == ("refused", "cooldown")

    # the run reproduces from its recorded window: same rows, whatever arrived since
    late_x, late_y = world.world.sample(200, drift=1.0)
    write_traffic(world.store, world.model, "1", late_x, late_y,
                  world.now - timedelta(minutes=80), world.now - timedelta(minutes=40),
                  ingested_at=utc_now())
    reproduced = read_rows(world.store, DataWindow.from_dict(run["details"]))
    assert len(reproduced) == run["details"]["rows"]
    assert rows_checksum(reproduced) == run["details"]["checksum"]

    # someone moves the champion back to version 1 in MLflow: it is deployed, recorded
    mlflow.MlflowClient(world.registry.tracking_uri).set_registered_model_alias(
        world.model, CHAMPION, "1")
    swap = world.loop.sync_champion(world.model)
    assert swap is not None and swap.outcome == "promoted", swap.summary()
    assert world.adapter.serving_version(world.model) == "1"
    assert world.loop.sync_champion(world.model) is None  # noticed once
    moved = [s for r in world.loop.lineage.trace(world.model) for s in r.steps
             if s["step"] == "alias" and s["status"] == "moved"]
    assert len(moved) == 1 and moved[0]["actor"] == "mlflow:alias"
    assert moved[0]["model_version"] == "1"
    promoted = world.deployer.log.history(world.model, limit=1)[0]
    assert (promoted["action"], promoted["model_version"], promoted["actor"]) == (
        "promote", "1", "mlflow:alias")


@pytest.mark.parametrize("tracking_uri", ["sqlite"], indirect=True)
def test_a_crashed_or_timed_out_run_promotes_nothing_and_raises_an_alert(world):
    world.bootstrap()
    world.drift()
    receiver = Receiver()
    try:
        evaluator = _evaluator(world, retrain_failed_rule().model_dump(by_alias=True),
                               WebhookReceiver(type="webhook", name="hook",
                                               url=receiver.url + "/hook"))
        # the crash gets all the time it needs (the subprocess imports torch first: seconds
        # on a loaded machine); the sleeper far less than its sleep
        for params, status, timeout in (({"fail": "corrupt features"}, "failed", "120s"),
                                        ({"sleep_s": 60}, "timed_out", "5s")):
            world.loop.settings = _settings(world.prefix, params=params, timeout=timeout)
            result = world.loop.retrain(world.model, kind="manual", actor="test",
                                        reason=status, force=True)
            assert result.outcome == "failed", result.summary()
            assert result.version is None
            (retraining, *_) = world.loop.lineage.trace(world.model)
            assert retraining.outcome == f"run {status}"
            run = retraining.step("run")
            assert run["details"]["log_tail"] or status == "timed_out"
            run_info = mlflow.MlflowClient(world.registry.tracking_uri).get_run(run["ref"])
            assert run_info.info.status == ("FAILED" if status == "failed" else "KILLED")
        assert "corrupt features" in world.loop.lineage.trace(world.model)[1].step(
            "run")["reason"]
        # nothing moved: version 1 serves and is the champion, no version 2 exists
        assert world.adapter.serving_version(world.model) == "1"
        assert world.registry.alias(world.model, CHAMPION) == "1"
        assert world.registry.alias(world.model, CHALLENGER) == "1"
        # the failed run raised RetrainFailed
        evaluator.tick(utc_now())
        evaluator.outbox.deliver(block_ms=0)
        fired = [p["body"]["watchloop"] for p in receiver.posts]
        assert [(n["labels"]["alertname"], n["labels"]["model"], n["status"]) for n in fired] \
            == [("RetrainFailed", world.model, "firing")]
    finally:
        receiver.close()


@pytest.mark.parametrize("tracking_uri", ["sqlite"], indirect=True)
def test_a_worse_challenger_is_not_promoted_and_the_gate_says_why(world):
    world.bootstrap()
    # no drift, and untrained weights: the challenger scores no better than chance on the
    # rows the champion was judged on
    world.loop.settings = _settings(world.prefix, params={"epochs": 0})
    result = world.loop.retrain(world.model, kind="manual", actor="test", reason="worse",
                                force=True)
    assert result.outcome == "rejected", result.summary()
    assert result.version == "2" and result.gate is not None
    assert result.gate.challenger < result.gate.champion
    assert result.reason.startswith("gate: challenger roc_auc")
    assert world.adapter.serving_version(world.model) == "1"
    assert world.registry.alias(world.model, CHAMPION) == "1"
    assert world.registry.alias(world.model, CHALLENGER) == "2"
    tags = world.registry.tags(world.model, "2")
    assert tags["watchloop.gate.passed"] == "false"
    assert tags["watchloop.gate.reason"] == result.gate.reason
    (retraining, *_) = world.loop.lineage.trace(world.model)
    assert retraining.outcome == "gate failed"
    assert retraining.step("gate")["reason"] == result.gate.reason
