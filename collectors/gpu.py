"""The ``gpu_metrics`` table's rows, shared by the NVML poller and the DCGM scraper.

Rows carry the host, the GPU index and UUID, the metric and its value. Counters (ECC error
totals, XID error counts, DCGM's ``*_TOTAL`` and energy counters) are stored as their raw
cumulative values; rates are computed in SQL later. Rows about the host rather than one GPU
(``nvml_up``, ``nvml_gpu_count``) have ``gpu`` 0 and ``gpu_uuid`` ``""``.

``collectors.nvml`` reads this machine's GPUs, ``collectors.dcgm`` scrapes a dcgm-exporter;
``watchloop gpu`` runs either by hand and prints the rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from telemetry.clock import epoch_ms

from .base import MetricRows

TABLE = "gpu_metrics"
COLUMNS = ("ts", "ingest_time", "host", "gpu", "gpu_uuid", "metric", "value", "labels")


class GpuRows:
    """Column-oriented ``gpu_metrics`` rows for one tick."""

    def __init__(self, host: str, scraped_at: datetime) -> None:
        self.host = host
        self.ts = epoch_ms(scraped_at)
        self.columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}

    def add(
        self,
        gpu: int,
        uuid: str,
        metric: str,
        value: float,
        labels: dict[str, str] | None = None,
        host: str | None = None,
    ) -> None:
        """One sample; ``host`` overrides the tick's host (a DCGM exporter names its own)."""
        columns = self.columns
        columns["ts"].append(self.ts)
        columns["host"].append(host or self.host)
        columns["gpu"].append(gpu)
        columns["gpu_uuid"].append(uuid)
        columns["metric"].append(metric)
        columns["value"].append(float(value))
        columns["labels"].append(labels or {})

    def build(self, ingested_at: datetime) -> MetricRows:
        """The rows, with ``ingest_time`` set."""
        self.columns["ingest_time"] = [epoch_ms(ingested_at)] * len(self.columns["ts"])
        return MetricRows(TABLE, self.columns)
