"""Hot swaps on the real TorchServe and Triton: no request lost, the new version serving,
bad versions never promoted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving_adapters import (
    Deployer,
    DeploymentLog,
    ServingAdapter,
    Verifier,
    VerifySettings,
)
from telemetry import Store
from tests.serving import adapter_for, load, package, remove_model, unique_model

pytestmark = pytest.mark.services

BACKENDS = ["torchserve", "triton"]
# The machine is loaded by the servers and the load threads: the budget is generous here.
WARMUP = VerifySettings(warmup_requests=5, latency_budget_ms=400, replay_requests=0)
# The slow version's 4000 matrix products take 0.55 s a request on 2 AVX-512 cores, and more
# on anything slower: five times this budget, which a healthy version meets 10x over. (With
# 2000 products against 400 ms the verdict depended on how loaded the machine was.)
TIGHT = VerifySettings(warmup_requests=5, latency_budget_ms=100, replay_requests=0)


@pytest.fixture(params=BACKENDS)
def adapter(request: pytest.FixtureRequest) -> Iterator[ServingAdapter]:
    made = adapter_for(request.param, request)
    yield made
    made.close()


@pytest.fixture
def model(adapter: ServingAdapter) -> Iterator[str]:
    name = unique_model()
    yield name
    remove_model(adapter, name)


def deployer(adapter: ServingAdapter, store: Store, verify: VerifySettings = WARMUP) -> Deployer:
    return Deployer(adapter, DeploymentLog(store), Verifier(adapter, verify))


def test_ten_swaps_under_load_lose_no_request_and_each_serves_the_new_version(
        adapter: ServingAdapter, model: str, store: Store, tmp_path: Path) -> None:
    deploy = deployer(adapter, store)
    first = deploy.deploy(package(tmp_path, model, "1"), actor="test")
    assert first.outcome == "promoted", first.reason
    began: dict[str, float] = {}
    swapped_at: dict[str, float] = {}
    with load(adapter, model) as traffic:
        time.sleep(1.0)
        for version in map(str, range(2, 12)):
            began[version] = time.monotonic()
            result = deploy.deploy(package(tmp_path, model, version, weight=float(version)),
                                   actor="test")
            assert result.outcome == "promoted", result.reason
            swapped_at[version] = time.monotonic()
            time.sleep(0.5)  # some traffic on each version before the next swap
    assert traffic.failed == [], traffic.failed[:3]
    assert len(traffic.answers) > 100
    versions = list(swapped_at)
    for version, following in zip(versions, [*versions[1:], None], strict=True):
        until = began[following] if following else float("inf")
        # every request sent after a swap completed was answered by the new version, until
        # the next swap began (the serving version keeps serving while one is verified)
        after = traffic.between(swapped_at[version], until)
        assert after, f"no request reached version {version}"
        assert {a.version for a in after} == {version}
    assert adapter.serving_version(model) == "11"
    actions = store.query(
        "SELECT action, status, count() FROM deployments WHERE model = {m:String} "
        "GROUP BY action, status ORDER BY action", {"m": model})
    assert ("promote", "ok", 11) in actions
    # the version each swap replaced stays deployed for an instant rollback; older ones go
    assert ("retire", "ok", 9) in actions
    assert sorted(v.version for v in adapter.versions(model)) == ["10", "11"]


@pytest.mark.parametrize("defect, expected, verify", [
    ({"fail_above": -1.0}, "answers", WARMUP),
    ({"wrong_shape": True}, "answers", WARMUP),
    ({"logits": True}, "range", WARMUP),
    ({"slow_rounds": 4000}, "latency", TIGHT),
])
def test_a_version_that_fails_its_warm_up_is_never_promoted_and_the_old_one_keeps_serving(
        adapter: ServingAdapter, model: str, store: Store, tmp_path: Path,
        defect: dict, expected: str, verify: VerifySettings) -> None:
    assert deployer(adapter, store).deploy(
        package(tmp_path, model, "1"), actor="test").outcome == "promoted"
    with load(adapter, model, threads=1, pause_s=0.01) as traffic:
        result = deployer(adapter, store, verify).deploy(
            package(tmp_path, model, "2", **defect), actor="ci:alice")
    assert result.outcome == "rejected"
    assert result.verification is not None
    failed = [c.name for c in result.verification.checks if not c.passed]
    assert failed[0] == expected, result.reason
    assert adapter.serving_version(model) == "1"
    assert traffic.answers and traffic.failed == []
    assert {a.version for a in traffic.answers} == {"1"}
    assert "2" not in [v.version for v in adapter.versions(model)]  # retired, files gone
    verify = store.query(
        "SELECT status, actor, reason FROM deployments WHERE model = {m:String} "
        "AND model_version = '2' AND action = 'verify'", {"m": model})
    assert verify == [("failed", "ci:alice", result.reason)]
    assert expected in result.reason


def test_a_swap_refuses_a_version_that_is_already_deployed(
        adapter: ServingAdapter, model: str, store: Store, tmp_path: Path) -> None:
    deploy = deployer(adapter, store)
    assert deploy.deploy(package(tmp_path, model, "1"), actor="test").outcome == "promoted"
    again = deploy.deploy(package(tmp_path, model, "1", weight=2.0), actor="test")
    assert again.outcome == "failed"
    assert "already has" in again.reason and model in again.reason
    assert adapter.serving_version(model) == "1"
    row = store.query("SELECT action, status FROM deployments WHERE model = {m:String} "
                      "ORDER BY ts DESC LIMIT 1", {"m": model})
    assert row == [("deploy", "failed")]


