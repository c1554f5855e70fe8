"""Helpers shared by tests that drive real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

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


from watchloop.services.receiver import HttpReceiver as Receiver  # noqa: E402,F401
