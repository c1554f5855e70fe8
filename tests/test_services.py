"""Each helper starts the real server, and the server really serves its protocol."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from tests.plugins.services import AlertmanagerFactory, PrometheusFactory
from watchloop.services import (
    BinaryNotFound,
    KafkaBroker,
    MlflowServer,
    RedisServer,
    ServiceProcess,
    ServiceStartError,
    TorchServeServer,
    TritonServer,
    alertmanager_config,
    prometheus_config,
    write_doubling_model,
)

pytestmark = pytest.mark.services

T = TypeVar("T")


def eventually(probe: Callable[[], T | None], timeout: float = 20, interval: float = 0.2) -> T:
    """Return probe()'s first non-None value, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"no result within {timeout} s")
        time.sleep(interval)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_kafka_round_trip_through_a_consumer_group(kafka_broker: KafkaBroker) -> None:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    topic, group = unique("wl-topic"), unique("wl-group")
    admin = KafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap_servers)
    try:
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
        assert topic in admin.list_topics()
    finally:
        admin.close()

    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers)
    try:
        for i in range(3):
            producer.send(topic, f"event-{i}".encode())
        producer.flush(timeout=10)
    finally:
        producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_broker.bootstrap_servers,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        # a join takes about half the session timeout on Tansu (STACK.md): keep it short
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    received: list[bytes] = []
    try:
        deadline = time.monotonic() + 30
        while len(received) < 3 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                received.extend(record.value for record in records)
        consumer.commit()
    finally:
        consumer.close()
    assert received == [b"event-0", b"event-1", b"event-2"]


def test_redis_stream_read_and_ack_in_a_group(redis_server: RedisServer) -> None:
    import redis

    stream, group = unique("wl-stream"), "collectors"
    with redis.Redis.from_url(redis_server.url, decode_responses=True) as client:
        client.xgroup_create(stream, group, id="0", mkstream=True)
        ids = [client.xadd(stream, {"request_id": f"r{i}", "score": str(i)}) for i in range(3)]

        reply = client.xreadgroup(group, "c1", {stream: ">"}, count=10)
        # RESP3 (redis-py 8 default) answers a dict, RESP2 a list of pairs.
        entries = reply[stream][0] if isinstance(reply, dict) else reply[0][1]
        assert [entry_id for entry_id, _ in entries] == ids
        assert entries[0][1] == {"request_id": "r0", "score": "0"}
        assert client.xpending(stream, group)["pending"] == 3

        assert client.xack(stream, group, *ids) == 3
        assert client.xpending(stream, group)["pending"] == 0


def test_torchserve_is_healthy_and_lists_models(torchserve_server: TorchServeServer) -> None:
    ping = requests.get(f"{torchserve_server.inference_url}/ping", timeout=5)
    assert ping.status_code == 200
    assert ping.json()["status"] == "Healthy"

    models = requests.get(f"{torchserve_server.management_url}/models", timeout=5)
    assert models.status_code == 200
    assert models.json()["models"] == []

    metrics = requests.get(torchserve_server.metrics_url, timeout=5)
    assert metrics.status_code == 200




def test_triton_is_ready_and_loads_a_python_model(triton_server: TritonServer) -> None:
    base = triton_server.http_url
    # The server is shared by the session: server-wide readiness turns false once any test
    # has unloaded a model (explicit mode), so readiness is asserted for this model below.
    assert requests.get(f"{base}/v2/health/live", timeout=5).status_code == 200
    index = requests.post(f"{base}/v2/repository/index", json={}, timeout=5)
    assert index.status_code == 200

    # A load proves the backend directory and library path are right: when they are
    # not, the load hangs or fails.
    name = unique("double")
    write_doubling_model(triton_server.model_repository, name)
    load = requests.post(f"{base}/v2/repository/models/{name}/load", timeout=60)
    assert load.status_code == 200, load.text

    infer = requests.post(
        f"{base}/v2/models/{name}/infer",
        json={"inputs": [{"name": "INPUT0", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]}]},
        timeout=10,
    )
    assert infer.status_code == 200, infer.text
    assert infer.json()["outputs"][0]["data"] == [2.0, 4.0, 6.0]
    states = {m["name"]: m["state"] for m in requests.post(f"{base}/v2/repository/index").json()}
    assert states[name] == "READY"
    assert requests.get(f"{base}/v2/models/{name}/ready", timeout=5).status_code == 200
    requests.post(f"{base}/v2/repository/models/{name}/unload", timeout=30)


def test_mlflow_creates_an_experiment_and_stores_artifacts_in_workdir(
    mlflow_server: MlflowServer,
) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.tracking_uri)
    name = unique("wl-experiment")
    experiment_id = client.create_experiment(name)
    assert client.get_experiment_by_name(name).experiment_id == experiment_id

    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "auc", 0.91)
    client.log_text(run.info.run_id, "hello", "notes/hello.txt")
    assert client.get_run(run.info.run_id).data.metrics == {"auc": 0.91}
    stored = list(mlflow_server.artifacts_destination.rglob("hello.txt"))
    assert [p.read_text() for p in stored] == ["hello"]


@pytest.fixture
def gauge_target() -> Iterator[tuple[str, Any]]:
    """A prometheus_client HTTP server on a free port exposing one gauge."""
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    registry = CollectorRegistry()
    gauge = Gauge("watchloop_test_drift_score", "A drift score", ["model"], registry=registry)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{server.server_port}", gauge
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


ALERT_RULES = """
groups:
  - name: watchloop-test
    rules:
      - alert: DriftHigh
        expr: watchloop_test_drift_score > 0.5
        labels: {severity: page}
"""


def test_prometheus_scrapes_a_gauge_and_loads_rules(
    prometheus_factory: PrometheusFactory, gauge_target: tuple[str, Any]
) -> None:
    target, gauge = gauge_target
    gauge.labels(model="m1").set(0.73)
    prometheus = prometheus_factory(
        prometheus_config([target], scrape_interval="1s"), {"drift.yml": ALERT_RULES}
    )

    def scraped() -> float | None:
        answer = requests.get(
            f"{prometheus.url}/api/v1/query",
            params={"query": 'watchloop_test_drift_score{model="m1"}'},
            timeout=5,
        ).json()
        result = answer["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    assert eventually(scraped, timeout=20) == pytest.approx(0.73)

    groups = requests.get(f"{prometheus.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert [rule["name"] for group in groups for rule in group["rules"]] == ["DriftHigh"]


def test_alertmanager_accepts_and_returns_an_alert(
    alertmanager_factory: AlertmanagerFactory,
) -> None:
    alertmanager = alertmanager_factory(alertmanager_config())
    name = unique("WatchloopTest")
    alert = {
        "labels": {"alertname": name, "severity": "page", "model": "m1"},
        "annotations": {"summary": "drift score above 0.5"},
        "startsAt": datetime.now(UTC).isoformat(),
    }
    posted = requests.post(f"{alertmanager.url}/api/v2/alerts", json=[alert], timeout=5)
    assert posted.status_code == 200

    def listed() -> list[dict[str, Any]] | None:
        alerts = requests.get(
            f"{alertmanager.url}/api/v2/alerts",
            params={"filter": f'alertname="{name}"'},
            timeout=5,
        ).json()
        return alerts or None

    alerts = eventually(listed, timeout=10)
    assert alerts[0]["labels"] == alert["labels"]
    assert alerts[0]["annotations"] == alert["annotations"]
    assert alerts[0]["status"]["state"] in ("active", "unprocessed")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stop_ends_the_process_and_is_idempotent(tmp_path: Path) -> None:
    if (reason := KafkaBroker.available()) is not None:
        pytest.skip(reason)
    broker = KafkaBroker(tmp_path).start()
    pid = broker.pid
    assert pid is not None and _alive(pid)

    broker.stop()
    assert not _alive(pid)
    assert broker.pid is None
    broker.stop()  # a second stop is a no-op


class _ShellWithChild(ServiceProcess):
    """A leader that starts a background child, as TorchServe (Java) and MLflow do."""

    name = "shell"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.child_pid_file = self.workdir / "child.pid"

    def command(self) -> list[str]:
        script = f"sleep 300 & echo $! > {self.child_pid_file}; exec sleep 300"
        return ["/bin/sh", "-c", script]

    def is_ready(self) -> bool:
        return self.child_pid_file.exists() and self.child_pid_file.read_text().strip() != ""


def test_stop_ends_children_in_the_process_group(tmp_path: Path) -> None:
    with _ShellWithChild(tmp_path) as shell:
        child = int(shell.child_pid_file.read_text())
        assert _alive(child)
    # The child is not ours to reap; once killed it is a zombie or gone.
    assert not _alive(child) or _state(child) == "Z"


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2]


def test_a_server_that_dies_at_start_reports_its_log(tmp_path: Path) -> None:
    from watchloop.services import PrometheusServer

    if (reason := PrometheusServer.available()) is not None:
        pytest.skip(reason)
    server = PrometheusServer(tmp_path, "scrape_configs: [{job_name: 1, nonsense: true}]\n")
    with pytest.raises(ServiceStartError) as error:
        server.start(timeout=20)
    assert "prometheus" in str(error.value)
    assert server.url in str(error.value)
    assert "nonsense" in error.value.log_tail
    assert server.pid is None


def test_config_helpers_point_at_the_given_addresses() -> None:
    import yaml

    config = yaml.safe_load(prometheus_config(["127.0.0.1:1"], alertmanagers=["127.0.0.1:2"]))
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:1"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:2"]
    routing = yaml.safe_load(alertmanager_config("http://127.0.0.1:3/hook"))
    assert routing["receivers"][0]["webhook_configs"][0]["url"] == "http://127.0.0.1:3/hook"


def test_a_missing_binary_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    reason = RedisServer.available()
    assert reason is not None and "apt-get install redis-server" in reason
    with pytest.raises(BinaryNotFound, match="apt-get install redis-server"):
        RedisServer(tmp_path).start()
