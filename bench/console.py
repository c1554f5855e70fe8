"""A console left open: the memory of ``watchloop demo`` while a browser refreshes the on-call
page an hour's worth of times (360 refreshes at the default 10 s), against the same process
left alone for as long.

Runs ``watchloop demo`` (store, synthetic traffic, monitors, API and console in one process),
opens the on-call page in Chromium and reruns it ``--refreshes`` times (Streamlit's rerun
shortcut, which redraws the whole page: more work than a fragment's refresh), sampling the
process's RSS. The baseline is the same process over the same span of time with no browser
attached, so the store's and the traffic's own growth is not charged to the console.

    python -m bench.console [--refreshes 360] [--rate 100] [--quick]

Prints one JSON line last: ``rss_mb_before``/``rss_mb_after`` of each phase, ``growth_mb``
of each, their ``ratio``, and the growth per 100 refreshes over the second half.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import TimeoutError as PlaywrightTimeout

from bench._common import emit_result, log
from watchloop.services.base import free_port, http_ready

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc (MiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _wait(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the demo did not come up")
        time.sleep(0.5)


# Counts the page's completed script runs: each change of the app's state attribute away
# from "running" (the old value is in the record, so runs that end within one batch of
# mutations are counted too).
_COUNT_RUNS = """() => {
  window.__runs = 0;
  const app = document.querySelector('[data-testid="stApp"]');
  new MutationObserver(records => {
    for (const r of records) if (r.oldValue === 'running') window.__runs++;
  }).observe(app, {attributes: true, attributeOldValue: true,
                   attributeFilter: ['data-test-script-state']});
}"""


def _rerun(page: Any, runs: int) -> int:
    """Rerun the page (Streamlit's ``r`` shortcut) and wait until the run ended; a key press
    that went nowhere (the page busy) is pressed again."""
    for _ in range(5):
        page.keyboard.press("r")
        try:
            page.wait_for_function("n => window.__runs >= n", arg=runs + 1, timeout=20_000)
            break
        except PlaywrightTimeout:
            continue
    else:
        raise TimeoutError("the page did not rerun after 5 key presses")
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]',
                           timeout=120_000)
    return page.evaluate("() => window.__runs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refreshes", type=int, default=360,
                        help="reruns of the on-call page (360: an hour at 10 s)")
    parser.add_argument("--rate", type=int, default=100, help="demo records per second")
    parser.add_argument("--quick", action="store_true", help="60 refreshes")
    args = parser.parse_args(argv)
    refreshes = 60 if args.quick else args.refreshes
    from playwright.sync_api import sync_playwright

    workdir = Path(tempfile.mkdtemp(prefix="watchloop-bench-console-"))
    api, console = free_port(), free_port()
    demo = subprocess.Popen(
        [sys.executable, "-m", "watchloop.cli", "demo", "--no-services",
         "--data-dir", str(workdir / "demo"),
         "--api-port", str(api), "--console-port", str(console), "--rate", str(args.rate)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{console}"
    samples: list[tuple[int, float]] = []
    try:
        _wait(lambda: http_ready(f"{url}/_stcore/health"), 120)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(f"{url}/?range=1h&refresh=off")
            page.wait_for_selector('[data-testid="stDataFrame"]', timeout=120_000)
            page.evaluate(_COUNT_RUNS)
            runs = 0
            for _ in range(20):  # warm-up: imports, caches, the first plots
                runs = _rerun(page, runs)
            before = rss_mb(demo.pid)
            started = time.monotonic()
            for i in range(1, refreshes + 1):
                runs = _rerun(page, runs)
                if i % 20 == 0 or i == refreshes:
                    samples.append((i, rss_mb(demo.pid)))
                    log(f"{i} refreshes: RSS {samples[-1][1]:.0f} MiB")
            refreshing_s = time.monotonic() - started
            after = rss_mb(demo.pid)
            seen = page.evaluate("() => window.__runs")
            browser.close()
        # the baseline: the same process, as long again, with no console session open
        log(f"idle for {refreshing_s:.0f} s (the baseline)")
        idle_before = rss_mb(demo.pid)
        time.sleep(refreshing_s)
        idle_after = rss_mb(demo.pid)
    finally:
        demo.send_signal(signal.SIGTERM)
        demo.wait(timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)
    half = [s for s in samples if s[0] >= refreshes / 2]
    per_100 = ((half[-1][1] - half[0][1]) / (half[-1][0] - half[0][0]) * 100
               if len(half) > 1 else None)
    growth, idle_growth = after - before, idle_after - idle_before
    emit_result({
        "refreshes": refreshes, "runs_seen_by_the_browser": seen,
        "seconds": round(refreshing_s, 1),
        "per_refresh_s": round(refreshing_s / refreshes, 3),
        "rss_mb_before": round(before, 1), "rss_mb_after": round(after, 1),
        "growth_mb": round(growth, 1),
        "growth_mb_per_100_refreshes_second_half": None if per_100 is None
        else round(per_100, 2),
        "idle_rss_mb_before": round(idle_before, 1), "idle_rss_mb_after": round(idle_after, 1),
        "idle_growth_mb": round(idle_growth, 1),
        "ratio_after_before": round(after / before, 3),
        "samples": [[i, round(m, 1)] for i, m in samples],
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
