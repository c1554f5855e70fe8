"""GPU metrics scraped from a dcgm-exporter into ``gpu_metrics``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal
from urllib.parse import urlparse

import requests

from telemetry.clock import Clock, utc_now

from .base import MetricRows
from .gpu import GpuRows
from .scraping import ScrapeSettings, ScrapingPoller

# DCGM writes these "blank" sentinels (dcgm_structs.h: DCGM_INT64_BLANK = 0x7ffffffffffffff0,
# DCGM_FP64_BLANK = 2**47, each + 0..15 for not found / not supported / no permission) where
# a GPU has no value, and older exporters print them as if they were readings.
DCGM_INT64_BLANK = float(0x7FFFFFFFFFFFFFF0)
DCGM_FP64_BLANK = 2.0**47


class DcgmExporterSettings(ScrapeSettings):
    """A dcgm-exporter whose Prometheus text (``DCGM_FI_DEV_*``, ``DCGM_FI_PROF_*``) is scraped."""

    type: Literal["dcgm-exporter"] = "dcgm-exporter"
    name: str = "dcgm-exporter"
    url: str = "http://127.0.0.1:9400/metrics"
    host: str = ""  # default: the exporter's Hostname label, else the host in ``url``


class DcgmExporterPoller(ScrapingPoller):
    """Scrapes a dcgm-exporter into ``gpu_metrics``.

    Each sample keeps its DCGM field name as the metric (``DCGM_FI_DEV_GPU_UTIL``,
    ``DCGM_FI_PROF_PIPE_TENSOR_ACTIVE``); the ``gpu`` and ``UUID`` labels become ``gpu`` and
    ``gpu_uuid``, ``Hostname`` becomes ``host``, and the other labels (``modelName``,
    ``pci_bus_id``, ``device``, ``DCGM_FI_DRIVER_VERSION``, ``err_code``, MIG's ``GPU_I_ID``,
    Kubernetes' ``pod``/``namespace``/``container``) stay in ``labels``. DCGM's "blank"
    sentinels (a field the GPU does not support, printed as 9223372036854775794) are left out.
    """

    settings: DcgmExporterSettings

    def __init__(
        self,
        settings: DcgmExporterSettings | None = None,
        *,
        session: requests.Session | None = None,
        clock: Clock = utc_now,
    ) -> None:
        super().__init__(settings or DcgmExporterSettings(), session, clock)
        self._url_host = urlparse(self.settings.url).hostname or ""

    def collect(self) -> Sequence[MetricRows]:
        """Scrape once; raise ``CollectorError`` if the exporter did not answer."""
        rows = GpuRows(self.settings.host or self._url_host, self._clock())
        for sample in self._scrape(self.settings.url, "DCGM exporter"):
            if is_dcgm_blank(sample.value):
                continue
            labels = dict(sample.labels)
            gpu_label = labels.pop("gpu", "")
            uuid = labels.pop("UUID", "")
            hostname = labels.pop("Hostname", "")
            try:
                gpu = int(gpu_label) if gpu_label else 0
            except ValueError:
                gpu = 0
                labels["gpu"] = gpu_label
            rows.add(gpu, uuid, sample.name, sample.value, labels,
                     host=self.settings.host or hostname or None)
        return [rows.build(self._clock())]


def is_dcgm_blank(value: float) -> bool:
    """True for DCGM's placeholders for a missing value, never real readings."""
    value = float(value)  # the int64 sentinels all round to 2**63 as floats
    return value >= DCGM_INT64_BLANK or DCGM_FP64_BLANK <= value < DCGM_FP64_BLANK + 16
