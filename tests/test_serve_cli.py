"""``watchloop serve`` against the real TorchServe: deploy, status, rollback, promote, each
through the verified path and recorded with who did it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from serving_adapters.reference_models import save_scorer
from tests.helpers import read_store
from tests.serving import FEATURES, adapter_for, remove_model, unique_model

pytestmark = pytest.mark.services


def serve(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "watchloop.cli", "serve", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def project(tmp_path: Path, torchserve_server) -> Path:
    config = {
        "data_dir": str(tmp_path / "data"),
        "serving": {
            "backend": {"type": "torchserve", "inference_url": torchserve_server.inference_url,
                        "management_url": torchserve_server.management_url,
                        "metrics_url": torchserve_server.metrics_url,
                        "model_store": str(torchserve_server.model_store)},
            "verify": {"warmup_requests": 3, "latency_budget_ms": 1000},
        },
    }
    (tmp_path / "watchloop.yaml").write_text(yaml.safe_dump(config))
    for version, weight in (("1", 1.0), ("2", 2.0)):
        save_scorer(tmp_path / f"v{version}.pt", len(FEATURES), weight=weight)
    return tmp_path


def test_serve_deploys_rolls_back_and_promotes_recording_who_did_it(
        project: Path, request: pytest.FixtureRequest) -> None:
    model = unique_model()
    adapter = adapter_for("torchserve", request)
    try:
        for version in ("1", "2"):
            done = serve(project, "deploy", model, "--version", version, "--model-file",
                         f"v{version}.pt", "--features", ",".join(FEATURES), "--no-watch",
                         "--actor", "cli:carol")
            assert done.returncode == 0, done.stderr
            assert f"{model} version {version}: promoted" in done.stdout
            assert "verifying" in done.stderr  # progress goes to stderr
        status = serve(project, "status", model, "--json")
        assert status.returncode == 0, status.stderr
        shown = json.loads(status.stdout)
        assert shown["healthy"] is True
        # the replaced version stays deployed, idle, for an instant rollback
        assert [(v["version"], v["serving"]) for v in shown["versions"]] == [
            ("1", False), ("2", True)]
        assert shown["deployments"][0]["action"] == "promote"

        back = serve(project, "rollback", model, "--reason", "drill", "--actor", "cli:dave")
        assert back.returncode == 0, back.stderr
        assert f"{model} version 1: rolled_back" in back.stdout
        assert adapter.serving_version(model) == "1"

        again = serve(project, "promote", model, "2", "--no-watch", "--actor", "cli:carol")
        assert again.returncode == 0, again.stderr
        assert adapter.serving_version(model) == "2"
    finally:
        remove_model(adapter, model)
        adapter.close()
    rows = read_store(
        f"chdb://{project / 'data' / 'store'}?database=watchloop",
        "SELECT action, model_version, status, actor FROM deployments ORDER BY ts")
    steps = [list(r) for r in rows]
    assert ["deploy", "1", "ok", "cli:carol"] in steps
    assert ["rollback", "1", "ok", "cli:dave"] in steps
    assert steps[-2:] == [["verify", "2", "ok", "cli:carol"], ["promote", "2", "ok", "cli:carol"]]


def test_serve_without_a_serving_section_says_what_to_add(tmp_path: Path) -> None:
    (tmp_path / "watchloop.yaml").write_text(f"data_dir: {tmp_path / 'data'}\n")
    done = serve(tmp_path, "status", "fraud")
    assert done.returncode == 2
    assert "no serving: section" in done.stderr
