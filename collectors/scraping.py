"""What every poller that scrapes an HTTP endpoint shares: settings, a session, a clock.

TorchServe's and Triton's metrics (``collectors.serving_metrics``) and a dcgm-exporter
(``collectors.dcgm``) are scraped the same way: a GET with a timeout on a session the poller
closes only if it made it, the answer parsed as Prometheus text or JSON, every failure a
``CollectorError`` naming the service and its address.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Any

import requests
from pydantic import BaseModel, ConfigDict, Field

from telemetry.clock import Clock

from .base import CollectorError
from .promtext import PromTextError, Sample, http_get, parse_samples


class ScrapeSettings(BaseModel):
    """Settings every scraping poller has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    interval_s: Annotated[float, Field(gt=0)] = 15.0
    timeout_s: Annotated[float, Field(gt=0)] = 5.0

    @property
    def collector_name(self) -> str:
        """The name its health rows and metrics carry."""
        return self.name


class ScrapingPoller:
    """A poller over HTTP: ``settings``, a session (closed only if we made it), a clock."""

    def __init__(self, settings: ScrapeSettings, session: requests.Session | None,
                 clock: Clock) -> None:
        self.settings = settings
        self.name = settings.name
        self.interval_s = settings.interval_s
        self._own_session = session is None
        self._session = session if session is not None else requests.Session()
        self._clock = clock

    def _get(self, url: str, service: str, accept: Collection[int] = ()) -> requests.Response:
        return http_get(
            self._session, url, service=service, timeout_s=self.settings.timeout_s, accept=accept
        )

    def _scrape(self, url: str, service: str) -> list[Sample]:
        try:
            return parse_samples(self._get(url, service).text)
        except PromTextError as exc:
            raise CollectorError(f"{service} at {url}: not Prometheus text: {exc}") from exc

    @staticmethod
    def _json(response: requests.Response, service: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise CollectorError(f"{service} at {response.url}: answer is not JSON") from exc

    def close(self) -> None:
        """Close the HTTP session if this poller created it."""
        if self._own_session:
            self._session.close()
