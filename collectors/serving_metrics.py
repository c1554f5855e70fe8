"""Serving metrics scraped from TorchServe and Triton into ``serving_metrics``, per model and
version.

Counters (``ts_inference_requests_total``, ``nv_inference_request_success``, the ``*_count``
and ``*_ns`` of Triton's statistics) are stored as the raw cumulative values the server
reports, one row per series per scrape: rates and increases are computed in SQL later, per
series (model, model_version, metric, labels), taking each series' first sample as its
baseline. A server restart shows as a counter that goes down.

Each sample becomes one row: ``metric`` is the exporter's own name, ``model`` and
``model_version`` come from its model labels, and ``labels`` holds the labels that remain.
Samples about the whole server (``Requests2XX``, ``nv_cpu_utilization``) have ``model`` and
``model_version`` set to ``""``; model-level TorchServe metrics without a version label
(``PredictionTime``) have ``model_version`` ``""``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

import requests
from pydantic import Field

from telemetry.clock import Clock, epoch_ms, utc_now

from .base import CollectorError, MetricRows
from .promtext import Sample
from .scraping import ScrapeSettings, ScrapingPoller

__all__ = [
    "TorchServeMetricsPoller",
    "TorchServeMetricsSettings",
    "TritonMetricsPoller",
    "TritonMetricsSettings",
]

log = logging.getLogger("watchloop.collectors")

TABLE = "serving_metrics"
COLUMNS = ("ts", "ingest_time", "server", "model", "model_version", "metric", "value", "labels")
DEFAULT_ROUTE = "default"

# (model, model_version, metric, value, labels)
Row = tuple[str, str, str, float, dict[str, str]]


class TorchServeMetricsSettings(ScrapeSettings):
    """A TorchServe whose metrics API (``metrics_mode=prometheus``) is scraped."""

    type: Literal["torchserve-metrics"] = "torchserve-metrics"
    name: str = "torchserve-metrics"
    metrics_url: str = "http://127.0.0.1:8082/metrics"
    # asked which version is the default, to attribute model_version="default" samples
    management_url: str = "http://127.0.0.1:8081"


class TritonMetricsSettings(ScrapeSettings):
    """A Triton whose metrics port and per-version statistics are scraped."""

    type: Literal["triton-metrics"] = "triton-metrics"
    name: str = "triton-metrics"
    metrics_url: str = "http://127.0.0.1:8002/metrics"
    # the HTTP API serving /v2/models/{m}/stats; None scrapes the metrics port only
    http_url: str | None = "http://127.0.0.1:8000"
    # models whose statistics are read; empty reads every loaded model in one request
    models: list[str] = Field(default_factory=list)


class _ServingPoller(ScrapingPoller):
    """A scraping poller whose rows go to ``serving_metrics``."""

    server: str

    def _rows(self, scraped_at: datetime, rows: Iterable[Row]) -> MetricRows:
        ts = epoch_ms(scraped_at)
        ingest = epoch_ms(self._clock())
        columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        for model, version, metric, value, labels in rows:
            columns["ts"].append(ts)
            columns["ingest_time"].append(ingest)
            columns["server"].append(self.server)
            columns["model"].append(model)
            columns["model_version"].append(version)
            columns["metric"].append(metric)
            columns["value"].append(float(value))
            columns["labels"].append(labels)
        return MetricRows(TABLE, columns)


class TorchServeMetricsPoller(_ServingPoller):
    """Scrapes TorchServe's Prometheus metrics API into ``serving_metrics``.

    TorchServe labels requests sent to the default route (``/predictions/{m}``) with
    ``model_version="default"``. Each scrape asks the management API which version is the
    default now (``GET /models/{m}`` describes only the default version) and stores those
    samples under that version, keeping ``route="default"`` in ``labels`` so they stay a
    series of their own. The counter behind the label is one for the whole model: after
    ``set-default`` the new default's ``route="default"`` series starts at the total served
    through the default route so far, and requests served by the old default since the
    previous scrape are counted for the new one. Samples of a model the management API no
    longer knows are skipped.
    """

    server = "torchserve"

    def __init__(
        self,
        settings: TorchServeMetricsSettings,
        *,
        session: requests.Session | None = None,
        clock: Clock = utc_now,
    ) -> None:
        super().__init__(settings, session, clock)
        self.settings: TorchServeMetricsSettings = settings
        self._unknown_logged: set[str] = set()

    def collect(self) -> Sequence[MetricRows]:
        """Scrape the metrics API once; raise ``CollectorError`` if TorchServe did not answer."""
        scraped_at = self._clock()
        samples = self._scrape(self.settings.metrics_url, "TorchServe metrics API")
        needs_default = {
            s.labels.get("model_name", "")
            for s in samples
            if s.labels.get("model_version") == DEFAULT_ROUTE
        }
        defaults = {model: self.default_version(model) for model in sorted(needs_default)}
        return [self._rows(scraped_at, self._to_rows(samples, defaults))]

    def default_version(self, model: str) -> str | None:
        """The version TorchServe serves on ``/predictions/{model}``, or None if the model is
        not registered."""
        url = f"{self.settings.management_url.rstrip('/')}/models/{quote(model, safe='')}"
        service = "TorchServe management API"
        response = self._get(url, service, accept=(404,))
        if response.status_code == 404:
            return None
        described = self._json(response, service)
        try:
            return str(described[0]["modelVersion"])
        except (LookupError, TypeError) as exc:
            raise CollectorError(
                f"{service} at {url}: no modelVersion in {str(described)[:200]}"
            ) from exc

    def _to_rows(self, samples: list[Sample], defaults: dict[str, str | None]) -> Iterable[Row]:
        for sample in samples:
            labels = dict(sample.labels)
            model = labels.pop("model_name", None)
            if model is None:
                model = labels.pop("ModelName", "")
            version = labels.pop("model_version", "")
            if version == DEFAULT_ROUTE:
                resolved = defaults.get(model)
                if resolved is None:
                    if model not in self._unknown_logged:
                        self._unknown_logged.add(model)
                        log.info("%s: model %r is not registered any more; its default-route "
                                 "metrics are skipped", self.name, model)
                    continue
                self._unknown_logged.discard(model)
                version = resolved
                labels["route"] = DEFAULT_ROUTE
            yield model, version, sample.name, sample.value, labels


class TritonMetricsPoller(_ServingPoller):
    """Scrapes Triton's metrics port (``nv_*``) and per-version statistics.

    Metrics keep their names and Triton's ``model``/``version`` labels become the model and
    version. Statistics from ``/v2/models/stats`` become ``triton_stats_*`` rows:
    ``inference_count``, ``execution_count``, ``last_inference_ms``, ``{kind}_count`` and
    ``{kind}_ns`` for each kind of inference statistic (``success``, ``fail``, ``queue``,
    ``compute_input``, ``compute_infer``, ``compute_output``, ``cache_hit``, ``cache_miss``),
    ``batch_{kind}_count``/``_ns`` labelled ``batch_size``, ``response_{kind}_count``/``_ns``
    labelled ``response``, and ``memory_usage_bytes`` labelled ``type`` and ``id``.
    """

    server = "triton"

    def __init__(
        self,
        settings: TritonMetricsSettings,
        *,
        session: requests.Session | None = None,
        clock: Clock = utc_now,
    ) -> None:
        super().__init__(settings, session, clock)
        self.settings: TritonMetricsSettings = settings
        self._missing_logged: set[str] = set()

    def collect(self) -> Sequence[MetricRows]:
        """Scrape metrics, then statistics; raise ``CollectorError`` if either failed."""
        scraped_at = self._clock()
        rows: list[Row] = []
        for sample in self._scrape(self.settings.metrics_url, "Triton metrics"):
            labels = dict(sample.labels)
            model = labels.pop("model", "")
            version = labels.pop("version", "")
            rows.append((model, version, sample.name, sample.value, labels))
        if self.settings.http_url:
            for stats in self._model_stats():
                rows.extend(stats_rows(stats))
        return [self._rows(scraped_at, rows)]

    def _model_stats(self) -> list[dict[str, Any]]:
        base = (self.settings.http_url or "").rstrip("/")
        service = "Triton statistics API"
        if not self.settings.models:
            response = self._get(f"{base}/v2/models/stats", service)
            return _model_stats_of(self._json(response, service), response.url)
        found: list[dict[str, Any]] = []
        for model in self.settings.models:
            url = f"{base}/v2/models/{quote(model, safe='')}/stats"
            # Triton answers 400 for a model that is not loaded: worth a line, not a failure.
            response = self._get(url, service, accept=(400, 404))
            if not response.ok:
                if model not in self._missing_logged:
                    self._missing_logged.add(model)
                    log.info("%s: no statistics for model %r: %s", self.name, model,
                             response.text[:200])
                continue
            self._missing_logged.discard(model)
            found.extend(_model_stats_of(self._json(response, service), url))
        return found


def _model_stats_of(payload: Any, url: str) -> list[dict[str, Any]]:
    stats = payload.get("model_stats") if isinstance(payload, dict) else None
    if not isinstance(stats, list):
        raise CollectorError(f"Triton statistics API at {url}: no model_stats list in "
                             f"{str(payload)[:200]}")
    return [entry for entry in stats if isinstance(entry, dict)]


def stats_rows(stats: dict[str, Any]) -> Iterable[Row]:
    """Rows for one model version's entry of Triton's ``model_stats``."""
    model, version = str(stats.get("name", "")), str(stats.get("version", ""))

    def row(metric: str, value: Any, labels: dict[str, str] | None = None) -> Row:
        return model, version, f"triton_stats_{metric}", float(value), labels or {}

    for key in ("inference_count", "execution_count"):
        if key in stats:
            yield row(key, stats[key])
    if "last_inference" in stats:
        yield row("last_inference_ms", stats["last_inference"])
    for kind, duration in stats.get("inference_stats", {}).items():
        yield row(f"{kind}_count", duration.get("count", 0))
        yield row(f"{kind}_ns", duration.get("ns", 0))
    for batch in stats.get("batch_stats", []):
        labels = {"batch_size": str(batch.get("batch_size", ""))}
        for kind, duration in batch.items():
            if isinstance(duration, dict):
                yield row(f"batch_{kind}_count", duration.get("count", 0), labels)
                yield row(f"batch_{kind}_ns", duration.get("ns", 0), labels)
    for response, kinds in stats.get("response_stats", {}).items():
        for kind, duration in kinds.items():
            yield row(f"response_{kind}_count", duration.get("count", 0), {"response": response})
            yield row(f"response_{kind}_ns", duration.get("ns", 0), {"response": response})
    for usage in stats.get("memory_usage", []):
        labels = {"type": str(usage.get("type", "")), "id": str(usage.get("id", ""))}
        yield row("memory_usage_bytes", usage.get("byte_size", 0), labels)
