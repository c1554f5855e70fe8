"""The HTTP API, served by uvicorn on a free loopback port and called over real HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests
from prometheus_client import CollectorRegistry

from telemetry import TelemetryWriter
from telemetry.metrics import IngestMetrics
from watchloop.api import create_app
from watchloop.metrics import ShellMetrics
from watchloop.shell import ApiServer

TOKEN = "test-token-7f3a"


def _serve(store, **options) -> ApiServer:
    registry = CollectorRegistry()
    writer = TelemetryWriter(store, known_models={"fraud"}, metrics=IngestMetrics(registry))
    app = create_app(store, writer, ShellMetrics(registry), **options)
    server = ApiServer(app, "127.0.0.1", 0)
    server.start()
    return server


@pytest.fixture
def api(store) -> Iterator[str]:
    server = _serve(store, max_body_bytes=50_000)
    yield server.url
    server.stop()


def _log(i: int, **overrides) -> dict:
    return {"request_id": f"r{i}", "model": "fraud", "version": "1",
            "event_time": time.time(), "latency_ms": 2.0, **overrides}


def test_health_and_readiness(api):
    assert requests.get(f"{api}/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(f"{api}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_a_json_array_is_ingested_and_bad_records_are_counted_and_dead_lettered(api, store):
    body = [_log(1), _log(2), {"request_id": "r3"}, _log(4, latency_ms=float("nan"))]
    response = requests.post(f"{api}/v1/logs", data=json.dumps(body), timeout=10,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    summary = response.json()
    assert (summary["accepted"], summary["rejected"]) == (2, 2)
    assert [e["index"] for e in summary["errors"]] == [2, 3]
    assert store.scalar("SELECT count() FROM inference_logs") == 2
    assert store.scalar("SELECT count() FROM dead_letters WHERE source = 'http'") == 2


def test_json_lines_are_validated_line_by_line(api, store):
    lines = "\n".join([json.dumps(_log(1)), "{broken", json.dumps(_log(2)), ""])
    response = requests.post(f"{api}/v1/logs", data=lines, timeout=10,
                             headers={"Content-Type": "application/x-ndjson"})
    assert response.json()["accepted"] == 2 and response.json()["rejected"] == 1
    labels = "\n".join(json.dumps({"request_id": f"r{i}", "label": 1, "label_time": time.time()})
                       for i in (1, 2))
    response = requests.post(f"{api}/v1/labels", data=labels, timeout=10)
    assert response.json()["accepted"] == 2
    assert store.scalar("SELECT count() FROM labels") == 2


def test_an_unparsable_body_is_dead_lettered_never_a_500(api, store):
    response = requests.post(f"{api}/v1/logs", data=b'[{"request_id": "r1",', timeout=10)
    assert response.status_code == 200
    assert response.json()["rejected"] == 1
    assert "invalid JSON" in response.json()["errors"][0]["reason"]
    assert store.scalar("SELECT payload FROM dead_letters") == '{"request_id": "r1",'


def test_an_oversized_body_is_refused_with_413(api, store):
    body = json.dumps([_log(i) for i in range(1000)])
    response = requests.post(f"{api}/v1/logs", data=body, timeout=10)
    assert response.status_code == 413
    assert "50000 bytes" in response.json()["error"]
    assert store.scalar("SELECT count() FROM inference_logs") == 0


def test_a_configured_token_is_required(store):
    server = _serve(store, token=TOKEN)
    try:
        body = json.dumps([_log(1)])
        missing = requests.post(f"{server.url}/v1/logs", data=body, timeout=5)
        wrong = requests.post(f"{server.url}/v1/logs", data=body, timeout=5,
                              headers={"Authorization": "Bearer nope"})
        right = requests.post(f"{server.url}/v1/logs", data=body, timeout=5,
                              headers={"Authorization": f"Bearer {TOKEN}"})
        assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        assert store.scalar("SELECT count() FROM inference_logs") == 1
    finally:
        server.stop()


def test_metrics_count_ingested_records(api):
    requests.post(f"{api}/v1/logs", data=json.dumps([_log(1), {"x": 1}]), timeout=10)
    text = requests.get(f"{api}/metrics", timeout=5).text
    assert ('watchloop_ingest_records_total{kind="inference_log",model="fraud",'
            'outcome="accepted",source="http"} 1.0') in text
    assert ('watchloop_ingest_records_total{kind="inference_log",model="",'
            'outcome="rejected",source="http"} 1.0') in text
    assert ('watchloop_ingest_rejected_records_total{kind="inference_log",'
            'reason="request_id",source="http"} 1.0') in text
    assert 'watchloop_http_requests_total{code="200",route="/v1/logs"} 1.0' in text


def test_a_store_failure_is_a_503_the_client_may_retry(store):
    server = _serve(store)
    try:
        store.close()
        response = requests.post(f"{server.url}/v1/logs", data=json.dumps([_log(1)]), timeout=5)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert "nothing was kept" in response.json()["error"]
        assert requests.get(f"{server.url}/readyz", timeout=5).status_code == 503
    finally:
        server.stop()
