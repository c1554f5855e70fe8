"""The config file's collectors become running components that fill the store."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from collectors.runner import CollectorRunner
from telemetry.rollup import RollupReconciler
from tests.helpers import wait_until
from watchloop.config import parse_config
from watchloop.wiring import build_components, build_writer

DCGM_SAMPLE = Path(__file__).parent / "data" / "dcgm_exporter_h100x2.txt"


@pytest.fixture
def dcgm_exporter() -> Iterator[str]:
    """A captured protocol peer: serves a real dcgm-exporter scrape over HTTP."""
    body = DCGM_SAMPLE.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()
    server.server_close()


def test_configured_pollers_run_and_store_their_rows_and_health(store, dcgm_exporter):
    config = parse_config(
        "collectors:\n"
        "  runner: {health_interval_s: 0.2}\n"
        "  pollers:\n"
        f"    - {{type: dcgm-exporter, url: '{dcgm_exporter}', interval_s: 0.2}}\n"
        "    - {type: nvml, interval_s: 0.2}\n",
        "watchloop.yaml", {})
    registry = CollectorRegistry()
    rollup, runner = build_components(config, store, build_writer(config, store), registry)
    assert isinstance(rollup, RollupReconciler)
    assert isinstance(runner, CollectorRunner)
    runner.start()
    try:
        wait_until(lambda: store.scalar(
            "SELECT uniqExact(gpu) FROM gpu_metrics WHERE metric = 'DCGM_FI_DEV_GPU_UTIL'") == 2)
        wait_until(lambda: store.scalar(
            "SELECT count() FROM gpu_metrics WHERE metric = 'nvml_up'"))
        wait_until(lambda: store.scalar(
            "SELECT uniqExact(collector) FROM collector_health") == 2)
    finally:
        runner.stop()
    metrics = generate_latest(registry).decode()
    assert 'watchloop_collector_up{collector="dcgm-exporter"} 1.0' in metrics
    assert "watchloop_collector_last_success_timestamp_seconds" in metrics


def test_a_poller_with_an_unknown_type_is_a_config_error_naming_the_types():
    from watchloop.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_config("collectors:\n  pollers:\n    - type: nvidia-smi\n", "w.yaml", {})
    [problem] = caught.value.problems
    assert problem.key == "collectors.pollers[0].type" and problem.line == 3
    assert "'dcgm-exporter'" in problem.message and "'nvml'" in problem.message


@pytest.mark.parametrize(("entry", "class_name"), [
    ("{type: torchserve-metrics}", "TorchServeMetricsPoller"),
    ("{type: triton-metrics}", "TritonMetricsPoller"),
    ("{type: nvml}", "NvmlGpuPoller"),
    ("{type: dcgm-exporter}", "DcgmExporterPoller"),
    ("{type: kafka-lag, bootstrap_servers: '127.0.0.1:9'}", "KafkaLagPoller"),
])
def test_each_poller_type_builds_its_poller(entry, class_name):
    from watchloop.wiring import build_poller

    config = parse_config(f"collectors:\n  pollers:\n    - {entry}\n", "w.yaml", {})
    poller = build_poller(config.collectors.pollers[0])
    assert type(poller).__name__ == class_name
    poller.close()
