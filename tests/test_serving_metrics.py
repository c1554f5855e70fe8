"""Serving metrics land per model and version, scraped from a real TorchServe and Triton."""

from __future__ import annotations

import logging
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests

from collectors.base import CollectorError, MetricPoller, MetricRows
from collectors.serving_metrics import (
    TorchServeMetricsPoller,
    TorchServeMetricsSettings,
    TritonMetricsPoller,
    TritonMetricsSettings,
)
from telemetry import Store
from telemetry.clock import epoch_ms
from watchloop.services import TorchServeServer, TritonServer, write_doubling_model
from watchloop.services.base import free_port, venv_bin

pytestmark = pytest.mark.services

HANDLER = '''
def handle(data, context):
    if data is None:  # the worker's warm-up call
        return None
    return [context.manifest["model"]["modelVersion"] for _ in data]
'''



class StepClock:
    """A clock that moves one second per reading, so scrape and ingest times differ. It starts
    at the real time: the table's TTL would soon drop rows from a fixed date in the past."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)
        self.readings: list[datetime] = []

    def __call__(self) -> datetime:
        self.readings.append(self.now)
        self.now += timedelta(seconds=1)
        return self.readings[-1]


def rows_of(result: list[MetricRows]) -> list[dict]:
    assert [r.table for r in result] == ["serving_metrics"]
    columns = result[0].columns
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def collect_until(poller, done, timeout: float = 15) -> tuple[list[MetricRows], list[dict]]:
    """Scrape until ``done(rows)``, or return the last scrape after ``timeout`` seconds.

    The servers count a request after its response is sent, so a scrape right after the last
    response may not include it yet.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = list(poller.collect())
        rows = rows_of(result)
        if done(rows) or time.monotonic() > deadline:
            return result, rows
        time.sleep(0.1)


def counts(rows: list[dict], model: str, metric: str) -> dict[tuple[str, str], float]:
    """{(model_version, route label): value} of one metric of one model."""
    return {
        (r["model_version"], r["labels"].get("route", "")): r["value"]
        for r in rows
        if r["model"] == model and r["metric"] == metric
    }


# -- TorchServe ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torchserve_model(torchserve_server: TorchServeServer, tmp_path_factory) -> Iterator[str]:
    """A model registered in versions 1.0 (the default: registered first) and 2.0."""
    name = f"echo{uuid.uuid4().hex[:8]}"
    source = tmp_path_factory.mktemp("mar")
    (source / "handler.py").write_text(HANDLER)
    archiver = str(venv_bin("torch-model-archiver"))
    management = torchserve_server.management_url
    for version in ("1.0", "2.0"):
        subprocess.run(
            [archiver, "--model-name", name, "--version", version, "--handler",
             str(source / "handler.py"), "--export-path", str(source), "--force"],
            check=True, capture_output=True, timeout=60,
        )
        mar = torchserve_server.model_store / f"{name}-{version}.mar"
        (source / f"{name}.mar").rename(mar)
        registered = requests.post(
            f"{management}/models",
            params={"url": mar.name, "initial_workers": 1, "synchronous": "true"},
            timeout=120,
        )
        assert registered.status_code == 200, registered.text
    yield name
    requests.put(f"{management}/models/{name}/2.0/set-default", timeout=10)
    requests.delete(f"{management}/models/{name}/1.0", timeout=30)
    requests.delete(f"{management}/models/{name}/2.0", timeout=30)


def torchserve_poller(server: TorchServeServer, clock=None) -> TorchServeMetricsPoller:
    settings = TorchServeMetricsSettings(
        metrics_url=server.metrics_url, management_url=server.management_url, timeout_s=10
    )
    return TorchServeMetricsPoller(settings, clock=clock or StepClock())


def predict(server: TorchServeServer, path: str, times: int) -> None:
    for _ in range(times):
        answer = requests.post(f"{server.inference_url}/predictions/{path}", data=b"1", timeout=30)
        assert answer.status_code == 200, answer.text


def test_torchserve_counts_land_on_the_version_that_served_them_default_route_included(
    torchserve_server: TorchServeServer, torchserve_model: str, store: Store
) -> None:
    model = torchserve_model
    predict(torchserve_server, model, 3)  # the default route: served by 1.0
    predict(torchserve_server, f"{model}/2.0", 2)
    predict(torchserve_server, f"{model}/1.0", 1)

    expected = {("1.0", "default"): 3.0, ("1.0", ""): 1.0, ("2.0", ""): 2.0}
    clock = StepClock()
    poller = torchserve_poller(torchserve_server, clock)
    assert isinstance(poller, MetricPoller)
    try:
        result, rows = collect_until(
            poller, lambda rows: counts(rows, model, "ts_inference_requests_total") == expected
        )
    finally:
        poller.close()

    assert counts(rows, model, "ts_inference_requests_total") == expected
    assert "default" not in {r["model_version"] for r in rows}
    latency = counts(rows, model, "ts_inference_latency_microseconds")
    assert set(latency) == {("1.0", "default"), ("1.0", ""), ("2.0", "")}
    assert all(value > 0 for value in latency.values())
    assert {r["server"] for r in rows} == {"torchserve"}
    assert {r["ts"] for r in rows} == {epoch_ms(clock.readings[-2])}
    assert {r["ingest_time"] for r in rows} == {epoch_ms(clock.readings[-1])}
    assert all(r["labels"]["hostname"] for r in rows if r["metric"].startswith("ts_"))

    # The rows fit the table as they are, and per-version totals read back as sent.
    assert store.insert_columns(result[0].table, result[0].columns) == len(rows)
    totals = store.query(
        "SELECT model_version, sum(value) FROM serving_metrics WHERE model = {m:String} "
        "AND metric = 'ts_inference_requests_total' GROUP BY model_version ORDER BY 1",
        {"m": model},
    )
    assert totals == [("1.0", 4.0), ("2.0", 2.0)]


def test_torchserve_default_route_follows_set_default(
    torchserve_server: TorchServeServer, torchserve_model: str
) -> None:
    model = torchserve_model
    management = torchserve_server.management_url
    poller = torchserve_poller(torchserve_server)
    try:
        before = counts(rows_of(list(poller.collect())), model, "ts_inference_requests_total")
        swapped = requests.put(f"{management}/models/{model}/2.0/set-default", timeout=10)
        assert swapped.status_code == 200, swapped.text
        predict(torchserve_server, model, 2)
        target = before[("1.0", "default")] + 2
        _, rows = collect_until(poller, lambda rows: counts(
            rows, model, "ts_inference_requests_total").get(("2.0", "default")) == target)
        after = counts(rows, model, "ts_inference_requests_total")
    finally:
        requests.put(f"{management}/models/{model}/1.0/set-default", timeout=10)
        poller.close()

    default_before = before.pop(("1.0", "default"))
    # TorchServe keeps one default-route counter per model: the new default's series starts
    # at the model's running total (see TorchServeMetricsPoller).
    assert after.pop(("2.0", "default")) == default_before + 2
    assert ("1.0", "default") not in after
    assert after == before  # the explicit-version series did not move


def test_torchserve_closed_port_is_a_collector_error_naming_the_address() -> None:
    port = free_port()
    settings = TorchServeMetricsSettings(
        metrics_url=f"http://127.0.0.1:{port}/metrics", timeout_s=2
    )
    poller = TorchServeMetricsPoller(settings)
    with pytest.raises(CollectorError, match=rf"TorchServe.*127\.0\.0\.1:{port}.*refused"):
        poller.collect()
    poller.close()


def test_settings_reject_unknown_keys() -> None:
    with pytest.raises(ValueError, match="metrics_ur"):
        TorchServeMetricsSettings.model_validate({"type": "torchserve-metrics", "metrics_ur": "x"})
    with pytest.raises(ValueError, match="type"):
        TritonMetricsSettings.model_validate({"type": "torchserve-metrics"})


# -- Triton --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def triton_model(triton_server: TritonServer) -> Iterator[str]:
    """A Python-backend model loaded in versions 1 and 2."""
    name = f"double{uuid.uuid4().hex[:8]}"
    write_doubling_model(triton_server.model_repository, name, versions=(1, 2))
    base = triton_server.http_url
    loaded = requests.post(f"{base}/v2/repository/models/{name}/load", timeout=120)
    assert loaded.status_code == 200, loaded.text
    yield name
    requests.post(f"{base}/v2/repository/models/{name}/unload", timeout=60)


def infer(server: TritonServer, model: str, version: str, times: int) -> None:
    body = {"inputs": [{"name": "INPUT0", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]}]}
    url = f"{server.http_url}/v2/models/{model}/versions/{version}/infer"
    for _ in range(times):
        answer = requests.post(url, json=body, timeout=30)
        assert answer.status_code == 200, answer.text


def test_triton_success_counts_per_version_from_metrics_and_stats(
    triton_server: TritonServer, triton_model: str
) -> None:
    infer(triton_server, triton_model, "1", 5)
    infer(triton_server, triton_model, "2", 2)
    settings = TritonMetricsSettings(
        metrics_url=triton_server.metrics_url, http_url=triton_server.http_url, timeout_s=10
    )
    poller = TritonMetricsPoller(settings, clock=StepClock())

    def per_version(metric: str, rows: list[dict]) -> dict[str, float]:
        found = counts(rows, triton_model, metric)
        return {version: value for (version, _), value in found.items()}

    sent = {"1": 5.0, "2": 2.0}
    try:
        _, rows = collect_until(poller, lambda rows: (
            per_version("nv_inference_request_success", rows) == sent
            and per_version("triton_stats_success_count", rows) == sent))
    finally:
        poller.close()

    assert per_version("nv_inference_request_success", rows) == sent
    assert per_version("triton_stats_success_count", rows) == sent
    assert per_version("triton_stats_inference_count", rows) == sent
    assert per_version("triton_stats_fail_count", rows) == {"1": 0.0, "2": 0.0}
    assert all(v > 0 for v in per_version("triton_stats_success_ns", rows).values())
    assert all(v > 0 for v in per_version("nv_inference_request_duration_us", rows).values())
    failures = [r for r in rows if r["model"] == triton_model
                and r["metric"] == "nv_inference_request_failure"]
    assert {r["labels"]["reason"] for r in failures} >= {"BACKEND", "REJECTED"}
    batches = [r for r in rows if r["model"] == triton_model
               and r["metric"] == "triton_stats_batch_compute_infer_count"]
    assert {(r["model_version"], r["labels"]["batch_size"], r["value"]) for r in batches} == {
        ("1", "1", 5.0), ("2", "1", 2.0)}
    assert {r["server"] for r in rows} == {"triton"}
    server_wide = [r for r in rows if r["metric"] == "nv_cpu_utilization"]
    assert [(r["model"], r["model_version"]) for r in server_wide] == [("", "")]


def test_triton_stats_for_configured_models_skip_an_unloaded_one_with_one_log_line(
    triton_server: TritonServer, triton_model: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = TritonMetricsSettings(
        metrics_url=triton_server.metrics_url,
        http_url=triton_server.http_url,
        models=[triton_model, "not-loaded"],
    )
    poller = TritonMetricsPoller(settings)
    try:
        with caplog.at_level(logging.INFO, logger="watchloop.collectors"):
            rows = rows_of(list(poller.collect()))
            poller.collect()
    finally:
        poller.close()
    stats_models = {r["model"] for r in rows if r["metric"].startswith("triton_stats_")}
    assert stats_models == {triton_model}
    assert len([m for m in caplog.messages if "not-loaded" in m]) == 1


def test_triton_closed_port_is_a_collector_error_naming_the_address() -> None:
    port = free_port()
    settings = TritonMetricsSettings(
        metrics_url=f"http://127.0.0.1:{port}/metrics", http_url=f"http://127.0.0.1:{port}"
    )
    poller = TritonMetricsPoller(settings)
    with pytest.raises(CollectorError, match=rf"Triton.*127\.0\.0\.1:{port}.*refused"):
        poller.collect()
    poller.close()
