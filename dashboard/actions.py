"""The console's changes to production, sent to Watchloop's API.

Acknowledge, silence, expire, roll back, promote and retrain all go through the API, which
checks the bearer token when one is configured and records each change with who made it.
So a console replica on another machine acts exactly as ``curl`` would, and nothing in the
console can change production behind the API's back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests

from telemetry.clock import utc_now


class ActionError(Exception):
    """An action the API refused or could not be asked: the message says why."""


@dataclass(frozen=True)
class Actions:
    """Sends actions to the API at ``api_url`` as ``actor``, with ``token`` if given."""

    api_url: str
    actor: str
    token: str | None = None
    timeout_s: float = 120.0  # a promotion verifies the new version before it answers

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"X-Watchloop-Actor": self.actor}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        url = f"{self.api_url.rstrip('/')}{path}"
        try:
            response = requests.request(method, url, json=body, headers=headers,
                                        timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise ActionError(f"cannot reach the Watchloop API at {self.api_url}: {exc}") \
                from exc
        if response.status_code == 401:
            raise ActionError("the API requires a valid token: enter it in the sidebar")
        if response.status_code >= 400:
            try:
                detail = response.json()
            except ValueError:
                detail = response.text[:300]
            message = detail.get("error", detail) if isinstance(detail, dict) else detail
            raise ActionError(f"{method} {path} was refused ({response.status_code}): "
                              f"{message}")
        return response.json() if response.content else None

    def acknowledge(self, fingerprint: str, comment: str) -> None:
        """Stop an alert's repeats until it fires anew."""
        self._send("POST", f"/v1/alerts/{fingerprint}/ack",
                   {"comment": comment, "author": self.actor})

    def silence(self, matchers: list[str], duration: timedelta, comment: str, *,
                starts: datetime | None = None) -> str:
        """Silence alerts whose labels match every matcher; returns the silence's id."""
        begin = starts or utc_now()
        created = self._send("POST", "/v1/silences", {
            "matchers": matchers, "starts": begin.isoformat(),
            "ends": (begin + duration).isoformat(), "comment": comment, "author": self.actor})
        return str(created["id"])

    def silences(self) -> list[dict[str, Any]]:
        """Every silence, active and expired."""
        return list(self._send("GET", "/v1/silences") or [])

    def expire(self, silence_id: str) -> None:
        """End a silence now."""
        self._send("DELETE", f"/v1/silences/{silence_id}")

    def rollback(self, model: str, reason: str, to: str | None = None) -> dict[str, Any]:
        """Give a model's traffic back to the version before (or ``to``)."""
        return dict(self._send("POST", f"/v1/models/{model}/rollback",
                               {"reason": reason, "to": to, "author": self.actor}))

    def promote(self, model: str, version: str, reason: str) -> dict[str, Any]:
        """Deploy and promote a registered version through the verified path."""
        return dict(self._send("POST", f"/v1/models/{model}/promote",
                               {"version": version, "reason": reason, "author": self.actor}))

    def retrain(self, model: str, reason: str, force: bool = False) -> None:
        """Queue a retraining under the shared policy."""
        self._send("POST", f"/v1/models/{model}/retrain",
                   {"reason": reason, "force": force, "author": self.actor})
