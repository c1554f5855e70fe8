"""Prometheus series about what the store received: records by outcome, and freshness.

``IngestMetrics`` counts every record ``TelemetryWriter`` handled, per kind, source and
model; a rejected record is counted by the class of its reason (the field at fault), so the
series stay few whatever the clients send. ``StoreFreshness`` reads, on each scrape, how old
the newest row of every fact table is.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .clock import Clock, utc, utc_now
from .errors import StoreError
from .queries import table_summaries
from .store import Store

log = logging.getLogger("watchloop.metrics")

#: Beyond this many model names, further ones are counted as "other" (a client that sends a
#: new model name with every record must not grow the series without bound).
MAX_MODELS = 200
_FIELD = re.compile(r"^([a-z_]+)(?:\.[^:]*)?:")


def reason_class(reason: str) -> str:
    """The field a dead-letter reason blames ("event_time", "features", "record"), or
    "store" for a record the store refused, "other" where none is named."""
    found = _FIELD.match(reason)
    return found[1] if found else "other"


class IngestMetrics:
    """Counters of accepted, duplicate and rejected records."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._records = Counter(
            "watchloop_ingest_records",
            "Records handled by the writer, by kind, source, model and outcome "
            "(accepted, duplicate, rejected); the model of a rejected record is not read",
            ["kind", "source", "model", "outcome"], registry=registry)
        self._rejected = Counter(
            "watchloop_ingest_rejected_records",
            "Records dead-lettered, by kind, source and the class of their reason",
            ["kind", "source", "reason"], registry=registry)
        self._models: set[str] = set()

    def counted(self, kind: str, source: str, outcome: str, by_model: Mapping[str, int]) -> None:
        """Count records of one outcome, by model ("" where there is none)."""
        for model, count in by_model.items():
            if count:
                self._records.labels(kind, source, self._model(model), outcome).inc(count)

    def rejected(self, kind: str, source: str, reasons: list[str]) -> None:
        """Count dead-lettered records by the class of their reason."""
        if reasons:
            self._records.labels(kind, source, "", "rejected").inc(len(reasons))
        for reason in reasons:
            self._rejected.labels(kind, source, reason_class(reason)).inc()

    def _model(self, model: str) -> str:
        if model in self._models or len(self._models) < MAX_MODELS:
            self._models.add(model)
            return model
        return "other"


class StoreFreshness(Collector):
    """``watchloop_table_freshness_seconds`` and ``watchloop_table_rows`` per fact table,
    read from the store when scraped (one query)."""

    def __init__(self, store: Store, clock: Clock = utc_now) -> None:
        self._store = store
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        freshness = GaugeMetricFamily(
            "watchloop_table_freshness_seconds",
            "Seconds since the newest row of each table was ingested", labels=["table"])
        rows = GaugeMetricFamily("watchloop_table_rows", "Rows in each table", labels=["table"])
        try:
            summaries = table_summaries(self._store)
        except StoreError as exc:
            log.warning("table freshness unavailable: %s", exc)
            return
        now = utc(self._clock())
        for summary in summaries:
            rows.add_metric([summary.table], summary.rows)
            if summary.newest_ingest is not None:
                age = (now - utc(summary.newest_ingest)).total_seconds()
                freshness.add_metric([summary.table], max(0.0, age))
        yield freshness
        yield rows
