"""``watchloop demo --fast`` end to end, as a newcomer runs it: one command starts Kafka, Redis,
MLflow, TorchServe and Watchloop with its console; the injected drift is detected, alerts
Datadog and the retrain receiver, a version is retrained, gated, hot-swapped and answers;
the console shows it (screenshots of every page, for the README); Ctrl-C leaves nothing
running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import CHROMIUM, launch, settled, shot
from tests.helpers import read_store, wait_until
from watchloop.demo.pace import FAST, WATCHED
from watchloop.demo.stack import DemoStack, demo_config
from watchloop.services.base import free_port

pytestmark = pytest.mark.services

PAGES = {"oncall": 1, "model": 6, "pipelines": 3, "alerts": 1, "loop": 0, "compare": 1}
FULL_LINEAGE = ["alert:firing", "trigger:accepted", "run:started", "run:succeeded",
                "register:ok", "gate:passed", "deploy:ok", "verify:ok", "promote:ok",
                "alias:ok"]


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return [str(value)]


@pytest.mark.parametrize("pace", [FAST, WATCHED], ids=lambda p: p.name)
@pytest.mark.parametrize("backend", ["torchserve", "triton"])
def test_the_demo_config_points_only_at_the_servers_the_demo_starts(tmp_path, backend, pace):
    """A new machine has no Redis on 6379: every Redis the demo's Watchloop uses (alert state,
    retrain policy) is the demo's own, and every address is a loopback one."""
    stack = DemoStack(tmp_path, backend, print)  # not started: the addresses are chosen
    config = demo_config(stack, pace, data_dir=tmp_path, api_port=1, console_port=2,
                         statsd_port=3, console=True).model_dump(mode="json")
    values = _strings(config)
    redis = [v for v in values if v.startswith("redis://")]
    assert redis and set(redis) == {stack.redis.url}
    for url in (v for v in values if "://" in v):
        assert "127.0.0.1" in url, url


def test_the_demo_empties_only_a_directory_it_made(tmp_path):
    kept = tmp_path / "notes.txt"
    kept.write_text("mine")
    done = subprocess.run([sys.executable, "-m", "watchloop.cli", "demo", "--data-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"{tmp_path} exists and was not made by the demo" in done.stdout
    assert kept.read_text() == "mine" and len(list(tmp_path.iterdir())) == 1


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)  # the server's whole process group (its workers included)
    except ProcessLookupError:
        return False
    return True


def test_the_fast_demo_closes_the_loop_on_real_parts_and_ctrl_c_leaves_nothing_running(
        tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    console = f"http://127.0.0.1:{free_port()}"
    output = tmp_path / "demo.out"
    with output.open("w") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "watchloop.cli", "demo", "--fast", "--data-dir",
             str(data_dir), "--api-port", str(free_port()), "--console-port",
             console.rsplit(":", 1)[1]],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def told() -> str:
        return output.read_text(errors="replace")

    def finished_story() -> dict | None:
        assert demo.poll() is None, f"the demo exited:\n{told()[-5000:]}"
        path = data_dir / "demo-summary.json"
        return json.loads(path.read_text()) if path.exists() else None

    pages: dict[str, str] = {}
    try:
        summary = wait_until(finished_story, timeout=600, every=2)
        assert summary["closed"], f"{summary['reason']}\n{told()[-5000:]}"
        if Path(CHROMIUM).exists():
            from playwright.sync_api import sync_playwright

            with sync_playwright() as playwright:
                browser = launch(playwright)
                page = browser.new_page(viewport={"width": 1500, "height": 1200})
                for name, charts in PAGES.items():
                    path = "" if name == "oncall" else name
                    page.goto(f"{console}/{path}?range=15m&model=fraud&refresh=off")
                    pages[name] = settled(page, charts)
                    assert shot(page, f"demo-{name}").stat().st_size > 20_000
                browser.close()
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        demo.wait(timeout=180)
    text = told()
    assert demo.returncode == 0, text[-5000:]

    # every stage happened, and the terminal said so
    assert (summary["version_before"], summary["version_after"]) == ("1", "2")
    assert set(summary["stages"]) >= {"detect", "alert", "train", "register", "gate",
                                      "deploy", "verify"}
    assert summary["lineage"] == FULL_LINEAGE
    for said in ("drift injected", "drift detected by the monitor", "FeatureDrift fired",
                 "version 2 answers traffic: the loop closed", "stages: detect"):
        assert said in text, text[-5000:]
    # the swap dropped no request, and version 2 answers
    assert summary["failed_requests"] == 0
    assert summary["answered"]["1"] > 0 and summary["answered"]["2"] > 0
    # Datadog got the alert as an event and a gauge, through the DogStatsD port
    assert summary["datagrams"] >= 2
    assert "datadog ← _e{" in text and "watchloop.alert.firing:1|g" in text

    # what the store holds came through the real paths (read from a process of its own:
    # this one holds an in-memory engine, and chDB allows one per process)
    url = f"chdb://{data_dir / 'store'}"
    ((v1, v2, labels, lag, serving, nvml),) = read_store(url, """
        SELECT (SELECT countIf(model_version = '1') FROM inference_logs FINAL
                WHERE model = 'fraud' AND source = 'payload-logs'),
               (SELECT countIf(model_version = '2') FROM inference_logs FINAL
                WHERE model = 'fraud' AND source = 'payload-logs'),
               (SELECT count() FROM labels WHERE source = 'payload-logs'),
               (SELECT max(lag_messages) FROM kafka_lag WHERE consumer_group = 'feature-pipeline'),
               (SELECT count() FROM serving_metrics),
               (SELECT count() FROM gpu_metrics WHERE metric = 'nvml_up')""")
    assert v1 > 100 and v2 > 0 and labels > 100
    assert lag > 0  # the feature pipeline's stalls
    assert serving > 0
    assert nvml > 0  # NVML reports, GPU or none: here "unavailable" with the reason
    assert read_store(url, "SELECT model_version, actor FROM deployments WHERE model = 'fraud' "
                           "AND action = 'promote' ORDER BY ts") == [
        ["1", "demo"], ["2", "alert:FeatureDrift"]]

    # the console showed it, page by page (when Chromium is here)
    if pages:
        assert "fraud" in pages["oncall"]
        assert "FeatureDrift" in pages["alerts"]
        assert "Retrainings of fraud" in pages["loop"] and "gate" in pages["loop"]

    # Ctrl-C stopped every server the demo started, workers included
    assert set(summary["services"]) == {"kafka", "redis", "mlflow", "torchserve"}
    running = {name: pid for name, pid in summary["services"].items() if _alive(pid)}
    assert not running, running
    assert "stopped Watchloop and every server it started" in text
