"""The post-deploy watch: a version that degrades after promotion is rolled back by
itself, with the reason; a healthy one completes and its predecessor is retired."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from collectors.redis_source import RedisStreamSettings, RedisStreamSource
from serving_adapters import (
    AUTOMATIC_ACTOR,
    AnalysisSettings,
    Deployer,
    DeploymentLog,
    PostDeployAnalysis,
    RecentRequests,
    ServingAdapter,
    Verifier,
    VerifySettings,
)
from telemetry import Store
from tests.helpers import running_collector, wait_until
from tests.serving import adapter_for, load, package, remove_model, unique_model

pytestmark = pytest.mark.services

WATCH = AnalysisSettings(interval_s=2.0, checks=4, failure_limit=2, min_requests=10,
                         baseline_window_s=60, max_error_rate=0.05, latency_slack_ms=200)
VERIFY = VerifySettings(warmup_requests=5, latency_budget_ms=1000, replay_requests=50)


@pytest.fixture(params=["torchserve", "triton"])
def adapter(request: pytest.FixtureRequest) -> Iterator[ServingAdapter]:
    made = adapter_for(request.param, request)
    yield made
    made.close()


@pytest.fixture
def watched(adapter: ServingAdapter, store: Store, redis_server, tmp_path: Path):
    """A model serving version 1 with its payload logs flowing into the store, under load;
    yields (deployer, model, payload-log config, traffic)."""
    model = unique_model()
    stream = f"logs-{uuid.uuid4().hex[:8]}"
    payload_log = {"kind": "redis", "url": redis_server.url, "target": stream, "flush_ms": 50}
    deployer = Deployer(adapter, DeploymentLog(store),
                        Verifier(adapter, VERIFY, RecentRequests(store)),
                        PostDeployAnalysis(store, WATCH))
    first = deployer.deploy(package(tmp_path, model, "1", payload_log), actor="test")
    assert first.outcome == "promoted", first.reason
    try:
        source = RedisStreamSource(RedisStreamSettings(url=redis_server.url, log_stream=stream,
                                                       label_stream=None))
        with running_collector(store, source), \
                load(adapter, model, threads=1, pause_s=0.01) as traffic:
            wait_until(lambda: store.scalar(
                "SELECT count() FROM inference_logs WHERE model = {m:String}",
                {"m": model}) >= 60, timeout=60)
            yield deployer, model, payload_log, traffic
    finally:
        remove_model(adapter, model)


def test_a_version_that_degrades_after_promotion_is_rolled_back_by_itself_with_the_reason(
        adapter: ServingAdapter, watched, store: Store, tmp_path: Path) -> None:
    deployer, model, payload_log, traffic = watched
    # passes its warm-up and replay, then fails a fifth of requests once in service
    bad = package(tmp_path, model, "2", payload_log, fail_above=0.8, fail_after_calls=80)
    started = time.monotonic()
    result = deployer.deploy(bad, actor="ci:bob")
    elapsed = time.monotonic() - started
    assert result.verification is not None and result.verification.passed
    assert result.verification.replayed == 50  # replayed real logged requests
    assert result.outcome == "rolled_back", result.reason
    assert "error rate" in result.reason
    assert adapter.serving_version(model) == "1"
    assert result.analysis is not None and result.analysis.outcome == "failed"
    assert len(result.analysis.checks) <= WATCH.checks
    assert elapsed < 120  # within the analysis window, not at some later sweep
    after = time.monotonic()
    time.sleep(1.0)
    assert {a.version for a in traffic.between(after, float("inf"))} == {"1"}
    rows = store.query_dicts(
        "SELECT action, status, actor, reason, details FROM deployments "
        "WHERE model = {m:String} AND model_version = '2' OR "
        "(model = {m:String} AND action = 'rollback') ORDER BY ts", {"m": model})
    steps = [(r["action"], r["status"], r["actor"]) for r in rows]
    assert steps == [
        ("deploy", "ok", "ci:bob"), ("verify", "ok", "ci:bob"), ("promote", "ok", "ci:bob"),
        ("watch", "failed", AUTOMATIC_ACTOR), ("rollback", "ok", AUTOMATIC_ACTOR),
        ("retire", "ok", AUTOMATIC_ACTOR)]
    rollback = store.query_dicts(
        "SELECT model_version, actor, reason, details FROM deployments "
        "WHERE model = {m:String} AND action = 'rollback'", {"m": model})
    assert len(rollback) == 1
    assert rollback[0]["model_version"] == "1" and rollback[0]["actor"] == AUTOMATIC_ACTOR
    assert "error rate" in rollback[0]["reason"]
    assert json.loads(rollback[0]["details"])["from"] == "2"


def test_a_healthy_version_completes_its_watch_and_the_previous_one_stays_as_standby(
        adapter: ServingAdapter, watched, store: Store, tmp_path: Path) -> None:
    deployer, model, payload_log, traffic = watched
    result = deployer.deploy(package(tmp_path, model, "2", payload_log, weight=1.05),
                             actor="test")
    assert result.outcome == "promoted", result.reason
    assert result.analysis is not None and result.analysis.outcome == "succeeded"
    assert [c.verdict for c in result.analysis.checks] == ["passed"] * WATCH.checks
    assert result.verification is not None and result.verification.agreement is not None
    assert result.verification.agreement > 0.9
    assert adapter.serving_version(model) == "2"
    assert traffic.failed == []
    assert [(v.version, v.serving) for v in adapter.versions(model)] == [("1", False),
                                                                          ("2", True)]
