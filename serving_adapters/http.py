"""One HTTP seam for the adapters: a session, errors translated, bodies checked."""

from __future__ import annotations

from typing import Any

from telemetry.boundary import translated
from telemetry.extras import require

from .errors import SERVING_ERRORS, ServingError

__all__ = ["HttpClient", "message_of"]


class HttpClient:
    """``requests`` with the server's name in every error, and no proxies from the
    environment (the servers are on the operator's network, often loopback)."""

    def __init__(self, service: str, timeout_s: float, session: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        requests = require("requests", "the serving adapters")
        self.service = service
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self.session.trust_env = False
        if headers:
            self.session.headers.update(headers)

    def call(self, method: str, url: str, *, expect: tuple[int, ...] = (200,),
             timeout_s: float | None = None, **kwargs: Any) -> Any:
        """The response, or ``ServingError`` naming the server, the URL and its answer."""
        with translated(self.service, url, SERVING_ERRORS):
            response = self.session.request(method, url, timeout=timeout_s or self.timeout_s,
                                            **kwargs)
        if response.status_code not in expect:
            raise ServingError(f"{self.service} at {url} answered {response.status_code}: "
                               f"{message_of(response)}")
        return response

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()


def message_of(response: Any) -> str:
    """The error text of a server's answer (its ``message`` or ``error`` field)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or body)[:500]
    return str(body)[:500]

