"""The live evaluator against a real Redis: paged once for the right thing, exactly once.

Time is driven by hand (``tick(now)`` over stored history), so each claim is exact: the
same firings as a backtest, a flapping signal paging once, no data, silences, inhibition,
two evaluators sharing one Redis, and a receiver that is down for a while.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import timedelta

import pytest
import redis

from alerts.backtest import backtest
from alerts.evaluator import AlertEvaluator
from alerts.routing import WebhookReceiver
from alerts.settings import AlertsSettings
from alerts.sinks import WebhookSink
from alerts.state import Matcher, Silence
from tests.helpers import Receiver
from tests.test_alert_backtest import MINUTE, START, _write_history


@pytest.fixture
def receiver():
    peer = Receiver()
    yield peer
    peer.close()


@pytest.fixture
def client(redis_server):
    connection = redis.Redis.from_url(redis_server.url)
    yield connection
    connection.close()


def _settings(receiver: Receiver, *extra_rules: dict, **overrides) -> AlertsSettings:
    rules = [{
        "name": "fraud-p99", "interval": "1m", "for": "2m", "keep_firing_for": "3m",
        "severity": "page", "annotations": {"summary": "fraud p99 over 50 ms",
                                            "runbook_url": "https://runbooks/p99"},
        "threshold": {"series": {"monitor": "latency", "metric": "latency_p99_ms",
                                 "model": "fraud"}, "op": ">", "value": 50, "recovery": 40},
    }, *extra_rules]
    return AlertsSettings.model_validate({
        "prefix": f"t{uuid.uuid4().hex[:8]}", "lease_ttl": "1s", "rules": rules,
        "receivers": [{"name": "hook", "type": "webhook", "url": receiver.url + "/hook",
                       "secret": "s3cret"}],
        "route": {"receivers": ["hook"], "repeat_interval": "4h"}, **overrides})


def _evaluator(settings, store, client, receiver, holder="a") -> AlertEvaluator:
    sinks = {"hook": WebhookSink(WebhookReceiver(type="webhook", name="hook",
                                                 url=receiver.url + "/hook",
                                                 secret="s3cret"))}
    return AlertEvaluator(settings, store, client, sinks, holder=holder)


def _run(evaluator, minutes, start=1) -> None:
    for m in range(start, minutes):
        evaluator.tick(START + m * MINUTE)
        evaluator.outbox.deliver(block_ms=0)


def _statuses(receiver) -> list[tuple[str, str]]:
    return [(p["body"]["watchloop"]["status"], p["body"]["watchloop"]["ends_at"])
            for p in receiver.posts]


def test_live_evaluation_pages_once_per_firing_as_the_backtest_says(store, client, receiver):
    _write_history(store)
    settings = _settings(receiver)
    _run(_evaluator(settings, store, client, receiver), 180)
    expected = backtest(store, settings.rules[0], START + MINUTE, START + 180 * MINUTE)
    sent = [(t.state, t.at.isoformat()) for ts in expected.transitions.values() for t in ts
            if t.notifies]
    assert _statuses(receiver) == sent and len(sent) == 6  # the flap pages once
    first = receiver.posts[0]
    assert first["body"]["text"] == "[FIRING] fraud-p99: fraud p99 over 50 ms"
    assert first["body"]["watchloop"]["labels"]["model"] == "fraud"
    signature = hmac.new(b"s3cret", first["raw"], hashlib.sha256).hexdigest()
    assert first["headers"]["X-Watchloop-Signature"] == f"sha256={signature}"
    events = store.query("SELECT state, count() FROM alert_events GROUP BY state "
                         "ORDER BY state")
    assert dict(events) == {"firing": 3, "pending": 3, "resolved": 3}


def test_no_data_from_the_monitor_notifies_as_no_data(store, client, receiver):
    from drift.results import ResultWriter

    _write_history(store, minutes=20)
    at = START + 20 * MINUTE
    ResultWriter(store, clock=lambda: at).write_metrics(
        "latency", "fraud", "7", at - 5 * MINUTE, at, {"latency_p99_ms": None}, at,
        status="no_data")
    _run(_evaluator(_settings(receiver), store, client, receiver), 25)
    assert [s for s, _ in _statuses(receiver)] == ["nodata"]


def test_a_silence_suppresses_and_expires(store, client, receiver):
    _write_history(store)
    evaluator = _evaluator(_settings(receiver), store, client, receiver)
    evaluator.alerts.add_silence(Silence(
        (Matcher("alertname", "fraud-p99"), Matcher("model", "fraud")),
        START, START + 60 * MINUTE, "oncall@example.com", "known incident, fix deploying"))
    _run(evaluator, 180)
    # the first incident (fired at 33, resolved at 49) falls in the silence
    assert [(s, e[11:16]) for s, e in _statuses(receiver)] == [
        (s, (START + m * MINUTE).isoformat()[11:16]) for s, m in
        (("firing", 73), ("resolved", 84), ("firing", 123), ("resolved", 134))]


def test_an_inhibition_rule_holds_back_the_ticket_while_the_page_fires(store, client,
                                                                       receiver):
    _write_history(store)
    ticket = {"name": "fraud-p99-ticket", "interval": "1m", "severity": "ticket",
              "threshold": {"series": {"monitor": "latency", "metric": "latency_p99_ms",
                                       "model": "fraud"}, "op": ">", "value": 30}}
    settings = _settings(receiver, ticket, inhibit_rules=[
        {"source_matchers": ["severity=page"], "target_matchers": ["severity=ticket"],
         "equal": ["model"]}])
    _run(_evaluator(settings, store, client, receiver), 180)
    tickets = [p["body"]["watchloop"] for p in receiver.posts
               if p["body"]["watchloop"]["labels"]["alertname"] == "fraud-p99-ticket"]
    # The ticket fires a step before the page (no for); while the page fires it is held
    # back, so only the first firing of each incident that the page did not yet cover gets
    # through: at minutes 31, 71 and 121, and their resolutions, which come after the page's.
    assert [n["status"] for n in tickets] == ["firing", "resolved"] * 3
    assert [n["ends_at"][11:16] for n in tickets if n["status"] == "firing"] == [
        (START + m * MINUTE).isoformat()[11:16] for m in (31, 71, 121)]


def test_two_evaluators_on_one_redis_notify_once_and_a_dead_leader_loses_nothing(
        store, client, receiver):
    import time

    _write_history(store)
    settings = _settings(receiver)
    a = _evaluator(settings, store, client, receiver, holder="a")
    b = _evaluator(settings, store, client, receiver, holder="b")
    for m in range(1, 60):  # both tick; only the leader evaluates
        at = START + m * MINUTE
        a.tick(at)
        b.tick(at)
        a.outbox.deliver(block_ms=0)
        b.outbox.deliver(block_ms=0)
    assert a.lease.token is not None and b.lease.token is None
    time.sleep(1.2)  # a dies without a word: its lease lapses; b takes over
    for m in range(60, 180):
        b.tick(START + m * MINUTE)
        b.outbox.deliver(block_ms=0)
    assert b.lease.token is not None
    keys = [p["headers"]["X-Watchloop-Idempotency-Key"] for p in receiver.posts]
    assert len(keys) == len(set(keys)) == 6
    # a wakes up: it is fenced out and writes nothing
    assert a.tick(START + 181 * MINUTE) == []
    a.lease.token = a.lease.token or 1
    from alerts.state import FencedOut

    with pytest.raises(FencedOut):
        a.alerts.save(a.lease, {}, [{"key": "stale"}])


def test_a_receiver_down_for_a_while_still_gets_every_notification_once(store, client,
                                                                        receiver):
    _write_history(store)
    evaluator = _evaluator(_settings(receiver), store, client, receiver)
    evaluator.outbox._backoff = (timedelta(milliseconds=50), timedelta(milliseconds=200))
    receiver.failing = True
    _run(evaluator, 180)
    assert receiver.posts == [] and evaluator.outbox.pending() == 6
    receiver.failing = False
    import time

    deadline = time.monotonic() + 10
    while evaluator.outbox.pending() and time.monotonic() < deadline:
        evaluator.outbox.deliver(block_ms=50)
    assert [s for s, _ in _statuses(receiver)] == ["firing", "resolved"] * 3
    for _ in range(3):
        evaluator.outbox.deliver(block_ms=0)
    assert len(receiver.posts) == 6


def test_settings_name_unknown_receivers_and_bad_matchers():
    with pytest.raises(ValueError, match="no receiver named 'nope'"):
        AlertsSettings.model_validate({"route": {"receivers": ["nope"]}})
    with pytest.raises(ValueError, match="not a matcher"):
        AlertsSettings.model_validate({"inhibit_rules": [
            {"source_matchers": ["severity page"], "target_matchers": []}]})


def test_silences_and_matchers_parse_like_alertmanagers():
    assert Matcher.parse("model=~fraud|trust").matches({"model": "trust"})
    assert not Matcher.parse("severity!=page").matches({"severity": "page"})
    assert json.dumps([Matcher.parse('env="prod"').value]) == '["prod"]'


def test_metrics_show_an_alerts_series_per_alert_that_is_not_inactive(store, client, receiver):
    from prometheus_client import CollectorRegistry, generate_latest

    from alerts.evaluator import AlertsCollector

    _write_history(store)
    evaluator = _evaluator(_settings(receiver), store, client, receiver)
    registry = CollectorRegistry()
    registry.register(AlertsCollector(evaluator.alerts))
    _run(evaluator, 36)  # firing since minute 33
    text = generate_latest(registry).decode()
    assert ('watchloop_alerts{alertname="fraud-p99",alertstate="firing",model="fraud",'
            'severity="page",version="7"} 1.0') in text
    _run(evaluator, 60, start=36)  # resolved at 49
    assert "alertstate=" not in generate_latest(registry).decode()


def test_a_firing_alert_repeats_after_repeat_interval_until_acknowledged(store, client,
                                                                        receiver):
    from drift.results import ResultWriter

    for m in range(60):  # one long breach
        at = START + m * MINUTE
        ResultWriter(store, clock=lambda at=at: at).write_metrics(
            "latency", "fraud", "7", at - 5 * MINUTE, at, {"latency_p99_ms": 90.0}, at,
            status="ok")
    settings = _settings(receiver, route={"receivers": ["hook"], "repeat_interval": "10m"})
    evaluator = _evaluator(settings, store, client, receiver)
    _run(evaluator, 30)  # fires at 3; repeats at 13 and 23
    sent = [e[11:16] for s, e in _statuses(receiver) if s == "firing"]
    assert sent == [(START + m * MINUTE).isoformat()[11:16] for m in (3, 13, 23)]
    [fp] = evaluator.alerts.alerts()
    evaluator.alerts.acknowledge(fp, "oncall@example.com", "looking",
                                 at=START + 30 * MINUTE)
    _run(evaluator, 55, start=30)
    assert len([s for s, _ in _statuses(receiver) if s == "firing"]) == 3


def test_alerts_of_one_group_go_out_together_after_group_wait(store, client, receiver):
    from drift.results import ResultWriter

    for version in ("7", "8", "9"):  # three versions breach at minute 10; one more at 30
        for m in range(60):
            at = START + m * MINUTE
            bad = 10 <= m < 40 if version != "9" else 30 <= m < 40
            ResultWriter(store, clock=lambda at=at: at).write_metrics(
                "latency", "fraud", version, at - 5 * MINUTE, at,
                {"latency_p99_ms": 90.0 if bad else 10.0}, at, status="ok")
    settings = _settings(receiver, route={
        "receivers": ["hook"], "group_by": ["alertname"], "group_wait": "2m",
        "group_interval": "5m"})
    _run(_evaluator(settings, store, client, receiver), 55)
    batches = [(p["body"]["watchloop"]["sent_at"][11:16],
                sorted((a["labels"]["version"], a["status"])
                       for a in p["body"]["watchloop"]["alerts"])) for p in receiver.posts]
    at = [(START + m * MINUTE).isoformat()[11:16] for m in (14, 32, 43)]
    # 7 and 8 fire at 12 (for 2m): out together at 14, group_wait later. 9 fires at 32, more
    # than group_interval after that batch: out at once. All three resolve at 43
    # (keep_firing_for 3m after the first clear step, 40), 11 minutes after the last batch:
    # out together at once.
    assert batches[0] == (at[0], [("7", "firing"), ("8", "firing")])
    assert batches[1] == (at[1], [("9", "firing")])
    assert batches[2] == (at[2], [("7", "resolved"), ("8", "resolved"), ("9", "resolved")])
    assert len(batches) == 3
    assert receiver.posts[0]["body"]["text"] == "[FIRING:2] alertname=fraud-p99"


def test_silences_and_acks_over_the_api_need_the_token_and_record_who(store, client,
                                                                       receiver):
    import requests
    from prometheus_client import CollectorRegistry

    from telemetry import TelemetryWriter
    from watchloop.api import create_app
    from watchloop.metrics import ShellMetrics
    from watchloop.shell import ApiServer

    _write_history(store, minutes=40)
    evaluator = _evaluator(_settings(receiver), store, client, receiver)
    _run(evaluator, 36)  # firing since 33
    writer = TelemetryWriter(store)
    server = ApiServer(create_app(store, writer, ShellMetrics(CollectorRegistry()),
                                  token="tok", alerts=evaluator.alerts), "127.0.0.1", 0)
    server.start()
    try:
        api, auth = server.url, {"Authorization": "Bearer tok"}
        [alert] = requests.get(f"{api}/v1/alerts", timeout=10).json()
        assert alert["state"] == "firing" and alert["labels"]["model"] == "fraud"
        silence = {"matchers": ["model=fraud"], "ends": "2099-01-01T00:00:00Z",
                   "comment": "deploying the fix"}
        assert requests.post(f"{api}/v1/silences", json=silence, timeout=10).status_code == 401
        made = requests.post(f"{api}/v1/silences", json=silence, timeout=10,
                             headers={**auth, "X-Watchloop-Actor": "ana@example.com"})
        assert made.status_code == 201
        [listed] = requests.get(f"{api}/v1/silences", timeout=10).json()
        assert listed["author"] == "ana@example.com" and listed["active"]
        bad = requests.post(f"{api}/v1/silences", headers=auth, timeout=10,
                            json={**silence, "matchers": ["model=~("]})
        assert bad.status_code == 422 and "not a regular expression" in bad.text
        ack = requests.post(f"{api}/v1/alerts/{alert['fingerprint']}/ack", headers=auth,
                            json={"comment": "on it", "author": "bo@example.com"}, timeout=10)
        assert ack.status_code == 200
        assert requests.post(f"{api}/v1/alerts/nope/ack", headers=auth, json={},
                             timeout=10).status_code == 404
        gone = requests.delete(f"{api}/v1/silences/{made.json()['id']}", headers=auth,
                               timeout=10)
        assert gone.status_code == 200
        assert not requests.get(f"{api}/v1/silences", timeout=10).json()[0]["active"]
    finally:
        server.stop()
        writer.close()
    events = store.query("SELECT state, actor FROM alert_events WHERE actor NOT LIKE "
                         "'evaluator:%' ORDER BY ts")
    assert [tuple(e) for e in events] == [("silenced", "ana@example.com"),
                                         ("acknowledged", "bo@example.com"),
                                         ("unsilenced", "api")]


def test_an_evaluation_that_fails_puts_its_alerts_in_error_and_says_so(store, client,
                                                                       receiver):
    _write_history(store, minutes=40)
    evaluator = _evaluator(_settings(receiver), store, client, receiver)
    _run(evaluator, 36)  # firing since 33
    store.close()  # the store goes away: every query of the rule fails
    evaluator.tick(START + 36 * MINUTE)
    evaluator.outbox.deliver(block_ms=0)
    assert [s for s, _ in _statuses(receiver)] == ["firing", "error"]
    [(state, _)] = evaluator.alerts.alerts().values()
    assert state.state == "error"


def test_an_alert_that_fired_under_a_silence_notifies_once_the_silence_ends(store, client,
                                                                           receiver):
    _write_history(store)
    evaluator = _evaluator(_settings(receiver), store, client, receiver)
    evaluator.alerts.add_silence(Silence((Matcher("alertname", "fraud-p99"),),
                                         START, START + 40 * MINUTE, "ana", "deploying"))
    _run(evaluator, 47)  # fired at 33 under the silence; the silence ends at 40
    assert [(s, e[11:16]) for s, e in _statuses(receiver)] == [
        ("firing", (START + 40 * MINUTE).isoformat()[11:16])]
    _run(evaluator, 50, start=47)
    assert [s for s, _ in _statuses(receiver)] == ["firing", "resolved"]


def test_a_rule_language_edge_cases():
    from alerts.rules import Rule

    rule = Rule.model_validate({"name": "every-request", "query": {"model": "fraud",
                                                                  "value": 100}})
    assert rule.query.where == "True"
    assert Matcher.parse("team=~'a|b'").matches({"team": "b"})
    with pytest.raises(ValueError, match="not a regular expression"):
        Matcher.parse("team=~'*'")
    with pytest.raises(ValueError, match="set by the rule itself"):
        Rule.model_validate({"name": "x", "labels": {"severity": "low"}, "threshold": {
            "series": {"monitor": "latency", "metric": "latency_p99_ms"}, "value": 1}})
