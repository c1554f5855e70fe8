"""Helpers shared by tests that drive real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from collectors.runner import CollectorRunner, RunnerSettings
from telemetry import TelemetryWriter

#: Collector settings for tests: small batches, flushed and retried quickly.
FAST_RUNNER = RunnerSettings(batch_size=500, flush_interval_s=0.1, backoff_initial_s=0.05,
                             backoff_max_s=0.2, health_interval_s=0.5)

_READ = """
import json, sys
from telemetry import open_store
store = open_store(sys.argv[1])
print(json.dumps(store.query(sys.argv[2]), default=str))
"""


def read_store(url: str, sql: str) -> list[list[Any]]:
    """Query an on-disk store from a fresh process (this one may hold an in-memory engine)."""
    done = subprocess.run([sys.executable, "-c", _READ, url, sql], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def wait_until(condition: Callable[[], Any], timeout: float = 60, every: float = 0.2) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s (last value {value!r})")
        time.sleep(every)


@contextmanager
def running_collector(store: Any, source: Any, *, writer: TelemetryWriter | None = None,
                      settings: RunnerSettings = FAST_RUNNER) -> Iterator[CollectorRunner]:
    """The collector runner over one source, started for the block and stopped after it."""
    runner = CollectorRunner(store, writer or TelemetryWriter(store), sources=[source],
                             settings=settings)
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()


from watchloop.services.receiver import HttpReceiver as Receiver  # noqa: E402,F401
