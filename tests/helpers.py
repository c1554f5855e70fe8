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


class Receiver:
    """A captured protocol peer: an HTTP server on loopback recording every POST (path,
    headers, JSON body); ``failing`` makes it answer 503, as a receiver that is down."""

    def __init__(self) -> None:
        import http.server
        import threading

        outer = self
        self.posts: list[dict] = []
        self.failing = False

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server interface
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if outer.failing:
                    self.send_response(503)
                    self.end_headers()
                    return
                import json

                outer.posts.append({"path": self.path, "headers": dict(self.headers),
                                    "body": json.loads(body or b"null"), "raw": body})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
