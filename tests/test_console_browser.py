"""The console in a real browser (Debian's Chromium, driven by Playwright), as a user sees it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import wait_until
from watchloop.services.base import free_port, http_ready

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="chromium is not installed (scripts/system-deps.sh)")


def test_the_demo_console_renders_the_store_page_with_live_traffic(tmp_path):
    from playwright.sync_api import sync_playwright

    api_port, console_port = free_port(), free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "watchloop.cli", "demo", "--data-dir", str(tmp_path / "demo"),
         "--api-port", str(api_port), "--console-port", str(console_port), "--rate", "300"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = f"http://127.0.0.1:{console_port}"
        wait_until(lambda: http_ready(f"{url}/_stcore/health"), timeout=90)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(url)
            page.wait_for_selector('[data-testid="stMetric"]', timeout=60_000)
            page.wait_for_selector('[data-testid="stPlotlyChart"] .main-svg', timeout=60_000)
            text = page.inner_text("body")
            page.screenshot(path=str(tmp_path / "console.png"), full_page=True)
            browser.close()
        assert "Inference logs" in text and "Dead letters" in text
        assert "Tables" in text and "Traffic" in text
        assert "fraud v1" in text or "fraud v2" in text  # the traffic chart's legend
        assert (tmp_path / "console.png").stat().st_size > 10_000
        if os.environ.get("WATCHLOOP_SCREENSHOT_DIR"):
            shutil.copy(tmp_path / "console.png", os.environ["WATCHLOOP_SCREENSHOT_DIR"])
    finally:
        demo.send_signal(signal.SIGTERM)
        _, err = demo.communicate(timeout=60)
    assert demo.returncode == 0, err[-3000:]


def test_api_docs_load_in_chromium_with_no_network(tmp_path):
    """Swagger UI is served from the installed package: a browser that may reach nothing but
    the API renders every operation and the record schemas."""
    from playwright.sync_api import sync_playwright
    from prometheus_client import CollectorRegistry

    from telemetry import Migrator, TelemetryWriter, open_store
    from watchloop.api import create_app
    from watchloop.metrics import ShellMetrics
    from watchloop.shell import ApiServer

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
    assert "InferenceLogRecord" in text and "LabelRecord" in text
    assert refused == []
