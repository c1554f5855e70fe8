"""Each sink speaks its receiver's protocol, checked field by field against a captured peer
(a UDP socket for DogStatsD, an HTTP server for Datadog's API) or the real Alertmanager."""

from __future__ import annotations

import json
import socket
import time

import pytest

from alerts.routing import AlertmanagerReceiver, DatadogReceiver
from alerts.sinks import AlertmanagerSink, DatadogSink, DeliveryError
from tests.helpers import Receiver, wait_until
from watchloop.services.prometheus import alertmanager_config

NOTIFICATION = {
    "key": "abc123:1764633600000:firing:dd", "receiver": "dd", "status": "firing",
    "fingerprint": "abc123",
    "labels": {"alertname": "fraud-p99", "severity": "page", "model": "fraud", "version": "7"},
    "annotations": {"summary": "fraud p99 over 50 ms", "runbook_url": "https://runbooks/p99"},
    "value": 80.0, "starts_at": "2026-12-01T10:00:00+00:00",
    "ends_at": "2026-12-01T10:00:00+00:00", "sent_at": "2026-12-01T10:00:05+00:00",
    "generator_url": "http://127.0.0.1:8501/alerts?alert=abc123",
}


@pytest.fixture
def dogstatsd():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def _datagrams(sock, count: int) -> list[str]:
    received = []
    while len(received) < count:
        data, _ = sock.recvfrom(65535)
        received += [d for d in data.decode().split("\n") if d]
    return received


def test_datadog_gets_an_event_and_a_gauge_over_dogstatsd_and_the_events_api(dogstatsd):
    api = Receiver()
    try:
        sink = DatadogSink(DatadogReceiver(type="datadog", name="dd",
                                           statsd_port=dogstatsd.getsockname()[1],
                                           api_url=api.url), env="prod", api_key="k-123")
        sink.send(NOTIFICATION)
        sink.close()
        event, gauge = sorted(_datagrams(dogstatsd, 2), key=lambda d: not d.startswith("_e"))
    finally:
        api.close()
    title, text = "[firing] fraud-p99", "fraud p99 over 50 ms"
    tags = "#alertname:fraud-p99,rule:fraud-p99,severity:page,model:fraud,version:7,env:prod"
    assert event == (f"_e{{{len(title)},{len(text)}}}:{title}|{text}|k:abc123|"
                     f"s:watchloop|t:error|{tags}")
    assert gauge == f"watchloop.alert.firing:1|g|{tags}"
    [post] = api.posts
    assert post["path"] == "/api/v1/events"
    assert post["headers"]["DD-API-KEY"] == "k-123"
    assert post["body"] == {
        "title": title, "text": text, "alert_type": "error", "aggregation_key": "abc123",
        "source_type_name": "watchloop",
        "tags": ["alertname:fraud-p99", "rule:fraud-p99", "severity:page", "model:fraud",
                 "version:7", "env:prod"]}


def test_without_an_api_key_datadog_gets_dogstatsd_only(dogstatsd, monkeypatch):
    monkeypatch.delenv("DD_API_KEY", raising=False)
    sink = DatadogSink(DatadogReceiver(type="datadog", name="dd",
                                       statsd_port=dogstatsd.getsockname()[1]))
    sink.send({**NOTIFICATION, "status": "resolved"})
    sink.close()
    assert any(d.startswith("watchloop.alert.firing:0|g") for d in _datagrams(dogstatsd, 2))


def test_a_breach_reaches_a_webhook_through_the_real_alertmanager(alertmanager_factory):
    hook = Receiver()
    try:
        manager = alertmanager_factory(alertmanager_config(hook.url + "/am"))
        sink = AlertmanagerSink(AlertmanagerReceiver(type="alertmanager", name="am",
                                                     url=manager.url))
        now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        sink.send({**NOTIFICATION, "starts_at": now, "sent_at": now})
        wait_until(lambda: hook.posts, timeout=30)
        body = hook.posts[0]["body"]
        assert body["status"] == "firing"
        [alert] = body["alerts"]
        assert alert["labels"] == NOTIFICATION["labels"]
        assert alert["annotations"]["runbook_url"] == "https://runbooks/p99"
        assert alert["generatorURL"] == NOTIFICATION["generator_url"]
        sink.send({**NOTIFICATION, "status": "resolved", "ends_at": now, "sent_at": now})
        wait_until(lambda: any(p["body"]["status"] == "resolved" for p in hook.posts),
                   timeout=30)
    finally:
        hook.close()


def test_a_receiver_that_refuses_says_whether_to_retry():
    peer = Receiver()
    peer.failing = True
    try:
        sink = AlertmanagerSink(AlertmanagerReceiver(type="alertmanager", name="am",
                                                     url=peer.url))
        with pytest.raises(DeliveryError, match="HTTP 503") as caught:
            sink.send(NOTIFICATION)
        assert caught.value.retry
    finally:
        peer.close()
    assert json.dumps(NOTIFICATION)
