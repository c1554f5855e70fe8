"""Actions from the console reach production through the API: behind its token, recorded
with who did them (real Redis for alert state, real TorchServe for the rollback)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry
from streamlit.testing.v1 import AppTest

from alerts.lifecycle import AlertState
from alerts.state import AlertStore, Lease
from dashboard import shared
from serving_adapters import Deployer, DeploymentLog, Verifier, VerifySettings
from telemetry import Store, TelemetryWriter
from telemetry.clock import utc_now
from tests.console_seed import Seeded, seed
from tests.serving import adapter_for, package, remove_model, unique_model
from watchloop.api import create_app
from watchloop.metrics import ShellMetrics
from watchloop.shell import ApiServer

pytestmark = pytest.mark.services

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
TOKEN = "s3cret-console-token"


@pytest.fixture
def alert_store(redis_server) -> Iterator[AlertStore]:
    client = redis.Redis.from_url(redis_server.url)
    yield AlertStore(client, prefix=f"t{uuid.uuid4().hex[:8]}")
    client.close()


@pytest.fixture
def console(console_store: Store, alert_store: AlertStore,
            request: pytest.FixtureRequest) -> Iterator[tuple[Seeded, Deployer | None]]:
    """A seeded store, its firing alert live in Redis, and the API (with a token) that the
    console's settings point at; with ``deployer`` marked, a TorchServe behind the API."""
    deployer = None
    if request.node.get_closest_marker("deployer"):
        adapter = adapter_for("torchserve", request)
        deployer = Deployer(adapter, DeploymentLog(console_store), Verifier(
            adapter, VerifySettings(warmup_requests=3, latency_budget_ms=1000,
                                    replay_requests=0)))
    writer = TelemetryWriter(console_store)
    server = ApiServer(create_app(console_store, writer, ShellMetrics(CollectorRegistry()),
                                  token=TOKEN, alerts=alert_store, deployer=deployer),
                       "127.0.0.1", 0)
    server.start()
    seeded = seed(console_store)
    lease = Lease(alert_store._redis, prefix=alert_store.prefix)
    assert lease.hold()
    alert_store.save(lease, {seeded.firing_fp: (
        AlertState("firing", since=utc_now() - timedelta(minutes=7), value=72.5),
        {"alertname": "fraud-p99", "severity": "page", "model": "fraud", "version": "2"})}, [])
    shared.use_settings(replace(seeded.settings, api_url=server.url, token_required=True))
    try:
        yield seeded, deployer
    finally:
        shared.use_settings(None)
        server.stop()
        writer.close()
        if deployer is not None:
            deployer.adapter.close()


def _as(page: str, who: str, token: str) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=120)
    app.run()
    app.switch_page(f"views/{page}.py").run()
    app.text_input(key="who").set_value(who)
    app.text_input(key="token").set_value(token)
    app.run()
    assert not app.exception, [e.message for e in app.exception]
    return app


def test_acknowledging_needs_the_token_and_is_recorded_with_who_did_it(
        console, alert_store, console_store):
    seeded, _ = console
    app = _as("oncall", "alice", "wrong")
    app.button(key=f"ack-{seeded.firing_fp}").click().run()
    assert any("requires a valid token" in e.value for e in app.error)
    assert alert_store.acknowledgements() == {}

    app.text_input(key="token").set_value(TOKEN).run()
    app.button(key=f"ack-{seeded.firing_fp}").click().run()
    assert any("Acknowledged as console:alice" in s.value for s in app.success)
    assert alert_store.acknowledgements()[seeded.firing_fp]["who"] == "console:alice"
    recorded = console_store.query(
        "SELECT actor FROM alert_events WHERE state = 'acknowledged' "
        "AND fingerprint = {fp:String}", {"fp": seeded.firing_fp})
    assert recorded == [("console:alice",)]


def test_an_action_without_a_name_is_not_sent(console, alert_store):
    seeded, _ = console
    app = _as("oncall", "", TOKEN)
    app.button(key=f"ack-{seeded.firing_fp}").click().run()
    assert any("Enter your name" in i.value for i in app.info)
    assert alert_store.acknowledgements() == {}


def test_silencing_an_alert_matches_its_labels_and_names_its_author(console, alert_store):
    seeded, _ = console
    app = _as("oncall", "bob", TOKEN)
    fp = seeded.firing_fp
    app.selectbox(key=f"silence-for-{fp}").set_value("4 hours")
    app.text_input(key=f"silence-why-{fp}").set_value("known incident INC-42").run()
    app.button(key=f"silence-{fp}").click().run()
    assert any("Silenced as console:bob" in s.value for s in app.success)
    [silence] = alert_store.silences()
    assert silence.author == "console:bob" and silence.comment == "known incident INC-42"
    assert {f"{m.name}{m.op}{m.value}" for m in silence.matchers} == {
        "alertname=fraud-p99", "model=fraud", "version=2"}
    assert timedelta(hours=3, minutes=59) < silence.ends - silence.starts <= timedelta(hours=4)
    # the alerts page lists it to anyone, and expires it for someone who gives a name
    viewer = _as("alerts", "", "")
    assert any("🔕" in m.value and "INC-42" in m.value and "console:bob" in m.value
               for m in viewer.markdown)
    alerts = _as("alerts", "bob", TOKEN)
    alerts.button(key=f"expire-{silence.id}").click().run()
    assert any("Expired as console:bob" in s.value for s in alerts.success)
    assert alert_store.silences()[0].ends <= utc_now()


@pytest.mark.deployer
def test_rolling_back_from_the_console_serves_the_version_before_and_records_who(
        console, console_store, tmp_path):
    _, deployer = console
    assert deployer is not None
    model = unique_model()
    try:
        for version in ("1", "2"):
            swap = deployer.deploy(package(tmp_path, model, version), actor="test", watch=False)
            assert swap.outcome == "promoted", swap.reason
        shared.use_settings(replace(shared.shared_settings(), models=(model,)))
        app = _as("loop", "carol", TOKEN)
        app.sidebar.selectbox(key="picker-model").set_value(model).run()
        app.text_input(key="loop-reason").set_value("v2 scores look off").run()
        app.button(key="loop-rollback").click().run()
        assert not app.exception, [e.message for e in app.exception]
        assert any(f"{model} rolled back as console:carol: now serving v1" in s.value
                   for s in app.success), [e.value for e in app.error]
        assert deployer.adapter.serving_version(model) == "1"
        # the page redrew itself: its deployments table shows the rollback, and who did it
        shown = next(d.value for d in app.dataframe if "action" in d.value.columns)
        assert ("rollback", "console:carol") in set(zip(shown.action, shown.actor, strict=True))
        rows = console_store.query(
            "SELECT model_version, status, actor, reason FROM deployments "
            "WHERE model = {m:String} AND action = 'rollback'", {"m": model})
        assert rows == [("1", "ok", "console:carol", "v2 scores look off")]
    finally:
        remove_model(deployer.adapter, model)


def test_model_actions_need_the_token_and_say_what_is_not_configured(console):
    import requests

    api = shared.shared_settings().api_url
    denied = requests.post(f"{api}/v1/models/fraud/rollback", json={}, timeout=10)
    assert denied.status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}", "X-Watchloop-Actor": "ci"}
    for action, body, missing in (("rollback", {}, "serving backend"),
                                  ("promote", {"version": "3"}, "feedback loop"),
                                  ("retrain", {}, "feedback loop")):
        answer = requests.post(f"{api}/v1/models/fraud/{action}", json=body, headers=auth,
                               timeout=10)
        assert answer.status_code == 409, (action, answer.text)
        assert missing in answer.json()["error"]
