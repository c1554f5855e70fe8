"""The console in a real browser (Debian's Chromium, driven by Playwright), as a user sees it.

Screenshots of every page are saved as test artifacts, in ``$WATCHLOOP_ARTIFACTS`` (default
``.artifacts/console`` in the repository).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from alerts.lifecycle import AlertState
from alerts.state import AlertStore, Lease
from serving_adapters import Deployer, DeploymentLog, Verifier, VerifySettings
from telemetry import Migrator, TelemetryWriter, open_store
from telemetry.clock import utc_now
from telemetry.store import PASSWORD_ENV
from tests.browser import CHROMIUM, ROOT, launch, needs_chromium, settled, shot
from tests.console_seed import seed
from tests.helpers import wait_until
from tests.serving import adapter_for, package, remove_model, unique_model
from watchloop.api import create_app
from watchloop.metrics import ShellMetrics
from watchloop.services.base import free_port, http_ready
from watchloop.shell import ApiServer

TOKEN = "browser-test-token"
CONFIG = """\
api:
  token: ${WATCHLOOP_API_TOKEN}
console:
  refresh: "off"
monitors:
  slos:
    - {name: fraud-fast, kind: latency, objective: 0.99, threshold_ms: 30}
alerts:
  rules:
    - name: fraud-p99
      severity: page
      threshold: {series: {source: monitor, monitor: latency, metric: latency_p99_ms,
                           model: fraud}, op: ">", value: 50}
      annotations: {summary: "fraud p99 over 50 ms",
                    runbook_url: "https://runbooks.example/fraud-p99"}
    - name: fraud-errors
      severity: ticket
      threshold: {series: {source: monitor, monitor: latency, metric: error_rate,
                           model: fraud}, op: ">", value: 0.05}
"""
# Counts the page's completed runs (a fragment's too): each change of the app's state
# attribute away from "running".
COUNT_RUNS = """() => {
  window.__runs = 0;
  const app = document.querySelector('[data-testid="stApp"]');
  new MutationObserver(records => {
    for (const r of records) if (r.oldValue === 'running') window.__runs++;
  }).observe(app, {attributes: true, attributeOldValue: true,
                   attributeFilter: ['data-test-script-state']});
}"""
pytestmark = needs_chromium


def _type(page: Any, label: str, text: str) -> None:
    """Type into the visible text input labelled ``label`` and submit it."""
    field = page.locator(f'input[aria-label="{label}"]:visible').first
    field.fill(text)
    field.press("Enter")
    settled(page)


def _act_as(page: Any, who: str) -> None:
    _type(page, "Your name", who)
    _type(page, "API token", TOKEN)


@pytest.fixture
def live_console(clickhouse_server, redis_server, tmp_path, monkeypatch,
                 request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The console as its own process (``streamlit run``) over a ClickHouse server, a seeded
    store, the API with a token, live alerts in Redis and a TorchServe behind the API."""
    database = f"t_{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv(PASSWORD_ENV, clickhouse_server.password)
    store = open_store(clickhouse_server.url(database))
    Migrator(store).migrate()
    seeded = seed(store)
    client = redis.Redis.from_url(redis_server.url)
    alerts = AlertStore(client, prefix=f"b{uuid.uuid4().hex[:8]}")
    lease = Lease(client, prefix=alerts.prefix)
    assert lease.hold()
    alerts.save(lease, {seeded.firing_fp: (
        AlertState("firing", since=utc_now() - timedelta(minutes=7), value=72.5),
        {"alertname": "fraud-p99", "severity": "page", "model": "fraud", "version": "2"})}, [])
    adapter = adapter_for("torchserve", request)
    deployer = Deployer(adapter, DeploymentLog(store), Verifier(adapter, VerifySettings(
        warmup_requests=3, latency_budget_ms=1000, replay_requests=0)))
    writer = TelemetryWriter(store)
    api = ApiServer(create_app(store, writer, ShellMetrics(CollectorRegistry()), token=TOKEN,
                               alerts=alerts, deployer=deployer), "127.0.0.1", 0)
    api.start()
    config = tmp_path / "watchloop.yaml"
    config.write_text(CONFIG)
    port = free_port()
    console = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"),
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "WATCHLOOP_STORE_URL": clickhouse_server.url(database),
             "WATCHLOOP_CONFIG": str(config), "WATCHLOOP_API_URL": api.url,
             "WATCHLOOP_API_TOKEN": TOKEN})
    url = f"http://127.0.0.1:{port}"
    model = unique_model()
    try:
        wait_until(lambda: http_ready(f"{url}/_stcore/health"), timeout=90)
        yield {"url": url, "store": store, "alerts": alerts, "seeded": seeded,
               "deployer": deployer, "model": model, "tmp": tmp_path}
    finally:
        console.send_signal(signal.SIGTERM)
        console.communicate(timeout=30)
        remove_model(adapter, model)
        api.stop()
        writer.close()
        adapter.close()
        client.close()
        store.command(f"DROP DATABASE IF EXISTS `{database}`")
        store.close()


def test_every_page_loads_draws_its_charts_and_the_on_call_acts_through_the_browser(
        live_console):
    from playwright.sync_api import sync_playwright

    url, seeded, store = live_console["url"], live_console["seeded"], live_console["store"]
    charts = {"oncall": 1, "model": 6, "pipelines": 3, "alerts": 1, "loop": 0, "compare": 1}
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1500, "height": 1200})
        for name, drawn in charts.items():
            path = "" if name == "oncall" else name  # the default page is served at /
            page.goto(f"{url}/{path}?range=1h&model=fraud")
            text = settled(page, drawn)
            assert shot(page, name).stat().st_size > 20_000
            if name == "oncall":
                assert "1 alert firing" in text and "fraud-p99" in text and "Runbook" in text
            if name == "compare":
                assert "replay agreement" in text and "✅" in text

        # acknowledge and silence the firing alert, as the on-call would
        page.goto(f"{url}/?range=1h&model=fraud")
        settled(page, 1)
        _act_as(page, "dana")
        page.get_by_role("button", name="Acknowledge").first.click()
        page.get_by_text("Acknowledged as console:dana").wait_for(timeout=30_000)
        page.get_by_role("button", name="Silence").first.click()
        _type(page, "Why", "INC-7 being handled")
        page.get_by_role("button", name="Silence this alert").first.click()
        page.get_by_text("Silenced as console:dana").wait_for(timeout=30_000)
        shot(page, "oncall-acted")

        # left alone at a 10 s refresh, the page redraws itself (its fragment reruns)
        page.goto(f"{url}/?range=1h&refresh=10s")
        settled(page, 1)
        page.evaluate(COUNT_RUNS)
        page.wait_for_function("() => window.__runs >= 2", timeout=60_000)
        browser.close()
    alerts = live_console["alerts"]
    assert alerts.acknowledgements()[seeded.firing_fp]["who"] == "console:dana"
    assert [s.author for s in alerts.silences()] == ["console:dana"]
    assert store.query("SELECT actor FROM alert_events WHERE state = 'acknowledged'") == [
        ("console:dana",)]


def test_rolling_back_in_the_browser_gives_the_traffic_back_and_records_who(live_console):
    from playwright.sync_api import sync_playwright

    deployer, model, store = (live_console["deployer"], live_console["model"],
                              live_console["store"])
    for version in ("1", "2"):
        swap = deployer.deploy(package(live_console["tmp"], model, version), actor="test",
                               watch=False)
        assert swap.outcome == "promoted", swap.reason
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1500, "height": 1200})
        page.goto(f"{live_console['url']}/loop?range=1h&model={model}")
        settled(page)
        _act_as(page, "erin")
        _type(page, "Reason (recorded)", "v2 misbehaves")
        page.get_by_role("button", name="Roll back").click()
        page.get_by_role("button", name="Yes, roll back").click()
        page.get_by_text(f"{model} rolled back as console:erin").wait_for(timeout=60_000)
        shot(page, "loop-rolled-back")
        browser.close()
    assert deployer.adapter.serving_version(model) == "1"
    assert store.query("SELECT model_version, actor, reason FROM deployments "
                       "WHERE model = {m:String} AND action = 'rollback'", {"m": model}) == [
        ("1", "console:erin", "v2 misbehaves")]


def test_api_docs_load_in_chromium_with_no_network(tmp_path):
    """Swagger UI is served from the installed package: a browser that may reach nothing but
    the API renders every operation and the record schemas."""
    from playwright.sync_api import sync_playwright

    store = open_store("chdb://memory?database=t_docs")
    Migrator(store).migrate()
    writer = TelemetryWriter(store)
    server = ApiServer(create_app(store, writer, ShellMetrics(CollectorRegistry())),
                       "127.0.0.1", 0)
    server.start()
    refused: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page()

            def offline(route) -> None:  # anything but the API is unreachable
                if route.request.url.startswith(server.url):
                    route.continue_()
                else:
                    refused.append(route.request.url)
                    route.abort()

            page.route("**/*", offline)
            page.goto(f"{server.url}/docs")
            page.wait_for_selector(".opblock-summary-path", timeout=30_000)
            page.wait_for_selector("section.models", timeout=30_000)
            text = page.inner_text("body")
            browser.close()
    finally:
        server.stop()
        writer.close()
        store.close()
    assert "/v1/logs" in text and "/v1/labels" in text and "/metrics" in text
    assert "/v1/models/{model}/rollback" in text
    assert "InferenceLogRecord" in text and "LabelRecord" in text
    assert refused == []
