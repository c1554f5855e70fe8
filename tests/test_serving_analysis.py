"""The post-deploy analysis on payload logs in the store: each of its checks fails the
version it should, and only that one."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from serving_adapters import AnalysisSettings, PostDeployAnalysis
from telemetry import Store
from telemetry.clock import utc_now

PROMOTED = utc_now().replace(microsecond=0) - timedelta(minutes=5)
SETTINGS = AnalysisSettings(interval_s=1, checks=3, failure_limit=2, min_requests=50,
                            baseline_window_s=600, latency_slack_ms=5)


def write(store: Store, version: str, start, count: int, *, latency: float = 5.0,
          error_share: float = 0.0, score=lambda rng: rng.random()) -> None:
    rng = random.Random(version)
    columns: dict[str, list] = {k: [] for k in (
        "request_id", "model", "model_version", "event_time", "ingest_time", "latency_ms",
        "status", "error", "numeric_features", "categorical_features", "prediction",
        "prediction_label", "source")}
    for i in range(count):
        at = start + timedelta(milliseconds=100 * i)
        failed = rng.random() < error_share
        for key, value in (("request_id", f"{version}-{i}"), ("model", "fraud"),
                           ("model_version", version), ("event_time", at),
                           ("ingest_time", at), ("latency_ms", latency * rng.uniform(0.8, 1.2)),
                           ("status", "error" if failed else "ok"),
                           ("error", "boom" if failed else ""), ("numeric_features", {}),
                           ("categorical_features", {}),
                           ("prediction", None if failed else score(rng)),
                           ("prediction_label", ""), ("source", "test")):
            columns[key].append(value)
    store.insert_columns("inference_logs", columns)


def analyse(store: Store) -> object:
    analysis = PostDeployAnalysis(store, SETTINGS, clock=utc_now, sleep=lambda _s: None)
    return analysis.run("fraud", "2", "1", PROMOTED)


@pytest.fixture
def baseline(store: Store) -> Store:
    write(store, "1", PROMOTED - timedelta(minutes=4), 1000)
    return store


@pytest.mark.parametrize("new, outcome, reason", [
    ({}, "succeeded", ""),
    ({"error_share": 0.2}, "failed", "error rate"),
    ({"latency": 40.0}, "failed", "p99"),
    ({"score": lambda rng: 0.9 + rng.random() / 10}, "failed", "prediction PSI"),
])
def test_each_check_fails_the_version_that_breaks_it(baseline: Store, new: dict,
                                                     outcome: str, reason: str) -> None:
    write(baseline, "2", PROMOTED + timedelta(seconds=1), 1000, **new)
    result = analyse(baseline)
    assert result.outcome == outcome, result.reason
    assert reason in result.reason
    if outcome == "failed":
        assert len(result.checks) == SETTINGS.failure_limit  # stops at the failure limit
        assert [r for c in result.checks for r in c.reasons if reason not in r] == []
    assert result.baseline["version"] == "1" and result.baseline["requests"] == 1000


def test_too_little_traffic_is_inconclusive_not_a_pass(baseline: Store) -> None:
    write(baseline, "2", PROMOTED + timedelta(seconds=1), 10, error_share=1.0)
    result = analyse(baseline)
    assert result.outcome == "inconclusive"
    assert {c.verdict for c in result.checks} == {"inconclusive"}
