"""Payload logging from inside the servers: each request's inference log reaches
``inference_logs`` through a collector, and a broker outage never fails a request."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import kafka
import pytest
import requests

from collectors.kafka_source import KafkaSource, KafkaSourceSettings
from collectors.redis_source import RedisStreamSettings, RedisStreamSource
from telemetry import Store
from telemetry.promtext import parse_samples
from tests.helpers import running_collector, wait_until
from tests.serving import adapter_for, instance, one_version
from watchloop.services.base import free_port

pytestmark = pytest.mark.services

@pytest.fixture
def transport(request: pytest.FixtureRequest) -> Iterator[tuple[dict, object]]:
    """(payload_log config for the server, the collector source reading it)."""
    if request.param == "redis":
        redis = request.getfixturevalue("redis_server")
        stream = f"logs-{uuid.uuid4().hex[:8]}"
        source = RedisStreamSource(RedisStreamSettings(url=redis.url, log_stream=stream,
                                                       label_stream=None))
        yield {"kind": "redis", "url": redis.url, "target": stream, "flush_ms": 50}, source
    else:
        broker = request.getfixturevalue("kafka_broker")
        topic = f"logs-{uuid.uuid4().hex[:8]}"
        admin = kafka.KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        admin.create_topics([kafka.admin.NewTopic(topic, 1, 1)])
        admin.close()
        source = KafkaSource(KafkaSourceSettings(bootstrap_servers=broker.bootstrap_servers,
                                                 group_id=f"g-{topic}", log_topics=[topic]))
        yield {"kind": "kafka", "url": f"kafka://{broker.bootstrap_servers}",
               "target": topic, "flush_ms": 50}, source


# Each server publishes through the other transport's broker too, in the full matrix.
@pytest.mark.parametrize("backend, transport", [
    ("torchserve", "kafka"), ("triton", "redis"), ("torchserve", "redis"),
], indirect=["transport"])
def test_requests_reach_inference_logs_with_their_ids_features_and_predictions(
        backend: str, transport, store: Store, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    payload_log, source = transport
    with closing(adapter_for(backend, request)) as adapter, \
            one_version(adapter, store, tmp_path, payload_log) as model:
        rng = random.Random(7)
        sent = [instance(rng, f"req-{i}") for i in range(40)]
        answers = {}
        for i in range(0, 40, 4):  # batches of four
            answer = adapter.predict(model, sent[i:i + 4])
            answers.update(zip(answer.request_ids, answer.scores, strict=True))
        with running_collector(store, source):
            rows = wait_until(lambda: (found := store.query_dicts(
                "SELECT request_id, model_version, status, numeric_features, prediction, "
                "latency_ms FROM inference_logs FINAL WHERE model = {m:String} "
                "ORDER BY request_id", {"m": model})) and len(found) >= 40 and found,
                timeout=60)
    assert len(rows) == 40  # the warm-up's own requests are never logged as traffic
    by_id = {r["request_id"]: r for r in rows}
    assert set(by_id) == {s["request_id"] for s in sent}
    for sent_instance in sent:
        row = by_id[sent_instance["request_id"]]
        assert row["model_version"] == "1" and row["status"] == "ok"
        # (the store parses JSON numbers to the nearest double, within an ulp)
        assert row["numeric_features"] == pytest.approx(sent_instance["features"], rel=1e-12)
        assert row["prediction"] == pytest.approx(answers[sent_instance["request_id"]])
        assert row["latency_ms"] > 0


@pytest.mark.parametrize("backend", ["torchserve", "triton"])
def test_with_the_broker_down_requests_succeed_and_the_server_counts_what_was_lost(
        backend: str, store: Store, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    dead = {"kind": "redis", "url": f"redis://127.0.0.1:{free_port()}/0", "target": "x",
            "flush_ms": 10}
    with closing(adapter_for(backend, request)) as adapter, \
            one_version(adapter, store, tmp_path, dead) as model:
        rng = random.Random(1)
        for _ in range(30):
            assert adapter.predict(model, [instance(rng)]).version == "1"
            time.sleep(0.02)
        metrics_url = adapter.settings.metrics_url
        lost = wait_until(lambda: _lost(requests.get(metrics_url, timeout=10).text, model),
                          timeout=30)
    assert 1 <= lost <= 30


def _lost(text: str, model: str) -> float:
    """The server's count of payload logs lost for ``model`` (both servers' spellings)."""
    return sum(s.value for s in parse_samples(text)
               if s.name in ("PayloadLogLost", "watchloop_payload_log_lost")
               and model in (s.labels.get("ModelName"), s.labels.get("model")))
