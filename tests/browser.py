"""Driving Debian's Chromium with Playwright: the browser, page settling and screenshots.

Screenshots are test artifacts, saved in ``$WATCHLOOP_ARTIFACTS`` (default
``.artifacts/console`` in the repository).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("WATCHLOOP_ARTIFACTS", ROOT / ".artifacts" / "console"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="chromium is not installed (scripts/system-deps.sh)")


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def settled(page: Any, charts: int = 0) -> str:
    """Wait until the page ran (no spinner) and drew ``charts`` Plotly charts; its text."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]',
                           timeout=90_000)
    if charts:
        page.wait_for_function(
            "n => document.querySelectorAll('[data-testid=\"stPlotlyChart\"] .main-svg')"
            ".length >= n", arg=charts, timeout=90_000)
    assert page.locator('[data-testid="stException"]').count() == 0, page.inner_text("body")
    return page.inner_text("body")
