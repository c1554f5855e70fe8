"""An HTTP server that records what it receives: the webhook end of alert tests and benchmarks."""

from __future__ import annotations


class HttpReceiver:
    """A captured protocol peer: an HTTP server on loopback recording every POST (path,
    headers, JSON body, arrival time); ``failing`` makes it answer 503, as a receiver that
    is down. Tests and benchmarks receive webhooks with it."""

    def __init__(self) -> None:
        import http.server
        import threading
        import time

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
                                    "body": json.loads(body or b"null"), "raw": body,
                                    "at": time.time()})
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
