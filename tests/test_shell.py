"""`watchloop up` and `watchloop demo` as a user runs them: a real process, real HTTP, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from watchloop.services.base import free_port


def _wait_for(url: str, process: subprocess.Popen, timeout: float = 60) -> requests.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited early: {process.communicate()[1][-3000:]}")
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {timeout}s")


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "watchloop.cli", *args], cwd=cwd, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "WATCHLOOP_TEST_TOKEN": "s3cret"},
    )


def _stop(process: subprocess.Popen) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    return process.returncode, err


def _count(store_url: str, sql: str) -> int:
    read = f"from telemetry import open_store; print(open_store({store_url!r}).scalar({sql!r}))"
    done = subprocess.run([sys.executable, "-c", read], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip())


def test_up_serves_api_and_console_and_shuts_down_cleanly_keeping_every_record(tmp_path):
    api_port, console_port = free_port(), free_port()
    (tmp_path / "watchloop.yaml").write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        f"api:\n  port: {api_port}\n  token: ${{WATCHLOOP_TEST_TOKEN}}\n"
        f"console:\n  port: {console_port}\n"
    )
    process = _start(["up"], tmp_path)
    try:
        api = f"http://127.0.0.1:{api_port}"
        assert _wait_for(f"{api}/healthz", process).json() == {"status": "ok"}
        assert requests.get(f"{api}/readyz", timeout=5).json()["status"] == "ready"
        console = _wait_for(f"http://127.0.0.1:{console_port}/", process)
        assert console.status_code == 200 and "<title>Streamlit</title>" in console.text
        assert _wait_for(f"http://127.0.0.1:{console_port}/_stcore/health", process).text == "ok"
        records = [{"request_id": f"r{i}", "model": "m", "version": "1",
                    "event_time": time.time(), "latency_ms": 1.0} for i in range(25)]
        posted = requests.post(f"{api}/v1/logs", data=json.dumps(records), timeout=10,
                               headers={"Authorization": "Bearer s3cret"})
        assert posted.json()["accepted"] == 25
        owner = json.loads((tmp_path / "data/store/watchloop-owner.json").read_text())
        assert owner["pid"] == process.pid and owner["api_url"] == api
    finally:
        code, err = _stop(process)
    assert code == 0, err[-3000:]
    assert "s3cret" not in err
    assert not (tmp_path / "data/store/watchloop-owner.json").exists()
    store_url = f"chdb://{tmp_path / 'data/store'}"
    assert _count(store_url, "SELECT count() FROM inference_logs") == 25


def test_demo_generates_traffic_into_its_own_store(tmp_path):
    api_port = free_port()
    process = _start(["demo", "--no-services", "--data-dir", str(tmp_path / "demo"),
                      "--rate", "100", "--no-console", "--api-port", str(api_port)], tmp_path)
    try:
        _wait_for(f"http://127.0.0.1:{api_port}/healthz", process)
        time.sleep(3)
    finally:
        code, err = _stop(process)
    assert code == 0, err[-3000:]
    url = f"chdb://{tmp_path / 'demo/store'}"
    assert _count(url, "SELECT count() FROM inference_logs") >= 100
    # Every demo model version has a reference profile for the drift monitor to compare with.
    assert _count(url, "SELECT uniqExact(model, model_version) FROM reference_profiles") == 4


def test_up_refuses_a_bad_config_without_a_traceback(tmp_path):
    (tmp_path / "watchloop.yaml").write_text("api:\n  prot: 1\n")
    done = subprocess.run([sys.executable, "-m", "watchloop.cli", "up"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "watchloop.yaml:2: api.prot: unknown key" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("args", [["--help"], ["up", "--help"], ["store", "migrate", "--help"]])
def test_help_is_available_for_every_command(args):
    done = subprocess.run([sys.executable, "-m", "watchloop.cli", *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "usage: watchloop" in done.stdout


def test_metrics_show_records_freshness_monitors_and_process_after_a_demo_run(tmp_path):
    (tmp_path / "watchloop.yaml").write_text(
        "monitors:\n  interval: 2s\n  drift: {window: 5m, min_rows: 50}\n"
        "  quality: {window: 15m, min_labels: 5}\n  latency: {window: 5m}\n"
        "  slos: [{name: availability, kind: availability, objective: 0.999}]\n")
    api_port = free_port()
    process = _start(["demo", "--no-services", "--data-dir", str(tmp_path / "demo"),
                      "--rate", "100", "--no-console", "--api-port", str(api_port)], tmp_path)
    api = f"http://127.0.0.1:{api_port}"
    try:
        _wait_for(f"{api}/healthz", process)
        now = time.time() - 120  # in a finished minute: the SLO windows are whole minutes
        logs = [{"request_id": f"m-{i}", "model": "fraud", "version": "1", "event_time": now,
                 "latency_ms": 3.0, "prediction": 0.9, "features": {"amount": 20.0}}
                for i in range(20)]
        logs.append({"request_id": "broken", "model": "fraud"})
        assert requests.post(f"{api}/v1/logs", json=logs, timeout=30).ok
        labels = [{"request_id": f"m-{i}", "label": 1, "label_time": now} for i in range(20)]
        assert requests.post(f"{api}/v1/labels", json=labels, timeout=30).ok

        def scraped() -> str | None:
            text = requests.get(f"{api}/metrics", timeout=10).text
            wanted = ('watchloop_drift_share{model="fraud",version="1"}',
                      'watchloop_model_quality{metric="accuracy",model="fraud",version="1"}')
            return text if all(w in text for w in wanted) else None

        text = _poll(scraped, process, timeout=90)
    finally:
        code, err = _stop(process)
    assert code == 0, err[-3000:]
    for series in (
        'watchloop_ingest_records_total{kind="inference_log",model="fraud",outcome="accepted",'
        'source="demo"}',
        'watchloop_ingest_records_total{kind="inference_log",model="fraud",outcome="accepted",'
        'source="http"} 20.0',
        'watchloop_ingest_records_total{kind="label",model="",outcome="accepted",'
        'source="http"} 20.0',
        'watchloop_ingest_rejected_records_total{kind="inference_log",reason="version",'
        'source="http"} 1.0',
        'watchloop_table_freshness_seconds{table="inference_logs"}',
        'watchloop_monitor_last_run_timestamp_seconds{monitor="drift"}',
        'watchloop_monitor_last_success_timestamp_seconds{monitor="quality"}',
        'watchloop_slo_burn_rate{model="fraud",slo="availability",version="1",window="1h"}',
        'watchloop_slo_error_budget_remaining{model="fraud",slo="availability",version="1"}',
        "process_resident_memory_bytes",
    ):
        assert series in text, series


def _poll(found, process: subprocess.Popen, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited early: {process.communicate()[1][-3000:]}")
        value = found()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"not seen within {timeout}s")
