"""GPU metrics into ``gpu_metrics``: read through NVML, or scraped from a DCGM exporter.

Rows carry the host, the GPU index and UUID, the metric and its value. Counters (ECC error
totals, XID error counts, DCGM's ``*_TOTAL`` and energy counters) are stored as their raw
cumulative values; rates are computed in SQL later. Rows about the host rather than one GPU
(``nvml_up``, ``nvml_gpu_count``) have ``gpu`` 0 and ``gpu_uuid`` ``""``.

On a machine without a GPU, a driver or the NVML library, ``NvmlGpuPoller`` keeps running:
each tick it tries NVML again and stores one ``nvml_up`` row of 0 whose ``reason`` label says
why, logging one line when that state begins or changes, never a traceback per tick.

Run it by hand on a GPU machine (prints the rows as JSON)::

    python -m collectors.gpu --once                      # NVML
    python -m collectors.gpu --once --dcgm-url http://127.0.0.1:9400/metrics
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from types import ModuleType
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

import requests
from pydantic import BaseModel, ConfigDict, Field

from telemetry.clock import Clock, epoch_ms, utc_now

from .base import CollectorError, MetricRows
from .promtext import PromTextError, http_get, parse_samples

__all__ = [
    "DcgmExporterPoller",
    "DcgmExporterSettings",
    "NvmlGpuPoller",
    "NvmlSettings",
    "main",
]

log = logging.getLogger("watchloop.collectors")

TABLE = "gpu_metrics"
COLUMNS = ("ts", "ingest_time", "host", "gpu", "gpu_uuid", "metric", "value", "labels")
INSTALL_HINT = "pip install 'watchloop[collectors]' (nvidia-ml-py)"
MAX_EVENTS_PER_TICK = 1000
# DCGM writes these "blank" sentinels (dcgm_structs.h: DCGM_INT64_BLANK = 0x7ffffffffffffff0,
# DCGM_FP64_BLANK = 2**47, each + 0..15 for not found / not supported / no permission) where
# a GPU has no value, and older exporters print them as if they were readings.
DCGM_INT64_BLANK = float(0x7FFFFFFFFFFFFFF0)
DCGM_FP64_BLANK = 2.0**47



class NvmlSettings(BaseModel):
    """GPUs of this machine, read through NVML (the library behind nvidia-smi)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["nvml"] = "nvml"
    name: str = "nvml"
    interval_s: Annotated[float, Field(gt=0)] = 15.0
    host: str = ""  # default: this machine's host name
    processes: bool = True  # per-process GPU memory
    xid_events: bool = True  # count XID errors (NVML events; may need privileges)

    @property
    def collector_name(self) -> str:
        """The name its health rows and metrics carry."""
        return self.name


class DcgmExporterSettings(BaseModel):
    """A dcgm-exporter whose Prometheus text (``DCGM_FI_DEV_*``, ``DCGM_FI_PROF_*``) is scraped."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["dcgm-exporter"] = "dcgm-exporter"
    name: str = "dcgm-exporter"
    url: str = "http://127.0.0.1:9400/metrics"
    interval_s: Annotated[float, Field(gt=0)] = 15.0
    timeout_s: Annotated[float, Field(gt=0)] = 5.0
    host: str = ""  # default: the exporter's Hostname label, else the host in ``url``

    @property
    def collector_name(self) -> str:
        """The name its health rows and metrics carry."""
        return self.name


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


# -- NVML ----------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class NvmlGpuPoller:
    """Per GPU: utilisation, memory, power, temperature, clocks, ECC and XID errors, and the
    GPU memory of each process, read through NVML.

    Metric names (all ``nvml_*``): ``gpu_utilization_percent``,
    ``memory_utilization_percent``, ``memory_used_bytes``, ``memory_total_bytes``,
    ``memory_free_bytes``, ``power_usage_watts``, ``power_limit_watts``,
    ``temperature_celsius``, ``sm_clock_mhz``, ``memory_clock_mhz``, ``ecc_errors_total``
    (labels ``type`` corrected/uncorrected, ``counter`` volatile/aggregate),
    ``xid_errors_total`` (XID events seen since this poller started) and ``last_xid`` (the
    code of the latest one, 0 for none), ``process_memory_used_bytes`` (labels ``pid``,
    ``process``, ``kind``), ``gpu_info`` (1, labels ``name``, ``pci_bus_id``), ``gpu_up`` (0
    with a ``reason`` for a GPU NVML lists but cannot read, e.g. one that fell off the bus),
    and per host ``up`` (1, or 0 with ``status`` and ``reason``) and ``gpu_count``. A reading
    the GPU does not support is left out; one that fails is left out and logged once.

    ``nvml`` replaces the ``pynvml`` module (imported on first use otherwise).
    """

    def __init__(
        self,
        settings: NvmlSettings | None = None,
        *,
        nvml: ModuleType | Any | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.settings = settings or NvmlSettings()
        self.name = self.settings.name
        self.interval_s = self.settings.interval_s
        self.host = self.settings.host or socket.gethostname()
        self._nvml = nvml
        self._clock = clock
        self._ready = False
        self._events: Any = None
        self._xid_watched: set[int] = set()
        self._xid_counts: dict[int, int] = {}
        self._last_xid: dict[int, int] = {}
        self._logged: set[str] = set()
        self._driver = ""
        self._reason = ""
        self.status = "not started"

    def collect(self) -> Sequence[MetricRows]:
        """Read every GPU once; without NVML, one ``nvml_up`` row of 0 saying why."""
        rows = GpuRows(self.host, self._clock())
        if not self._ready:
            self._start()
        if self._ready:
            nvml = self._nvml
            try:
                count = self._read_gpus(rows)
            except nvml.NVMLError as exc:  # NVML broke under us: driver unloaded, GPU lost
                self._shutdown()
                self._set_unavailable(f"NVML stopped answering: {exc}")
            else:
                self.status = f"ok: {count} GPU{'' if count == 1 else 's'}"
                rows.add(0, "", "nvml_up", 1, {"status": "ok", "driver_version": self._driver})
                rows.add(0, "", "nvml_gpu_count", count)
                return [rows.build(self._clock())]
        rows.add(0, "", "nvml_up", 0, {"status": "unavailable", "reason": self._reason})
        return [rows.build(self._clock())]

    def close(self) -> None:
        """Free the XID event set and shut NVML down."""
        self._shutdown()

    # -- start and stop ------------------------------------------------------------------

    def _start(self) -> None:
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                self._set_unavailable(f"nvidia-ml-py is not installed: {INSTALL_HINT}")
                return
            self._nvml = pynvml
        nvml = self._nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            self._set_unavailable(f"no NVML on this machine: {exc}")
            return
        self._ready = True
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            self._shutdown()
            self._set_unavailable(f"NVML cannot count GPUs: {exc}")
            return
        try:
            self._driver = _text(nvml.nvmlSystemGetDriverVersion())
        except nvml.NVMLError:
            self._driver = ""
        if self.settings.xid_events:
            self._watch_xids(count)
        log.info("%s: NVML ready on %s: %d GPU(s), driver %s", self.name, self.host, count,
                 self._driver or "unknown")

    def _set_unavailable(self, reason: str) -> None:
        changed = self.status != f"unavailable: {reason}"
        self.status = f"unavailable: {reason}"
        self._reason = reason
        if changed:
            log.warning("%s: GPU metrics unavailable on %s: %s (checking again every %g s)",
                        self.name, self.host, reason, self.interval_s)

    def _watch_xids(self, count: int) -> None:
        nvml = self._nvml
        self._xid_watched = set()
        try:
            self._events = nvml.nvmlEventSetCreate()
            for index in range(count):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                try:
                    nvml.nvmlDeviceRegisterEvents(
                        handle, nvml.nvmlEventTypeXidCriticalError, self._events
                    )
                except nvml.NVMLError as exc:  # not supported, or no permission (containers)
                    self._log_once(f"xid-{index}", "XID events of GPU %d not watched: %s",
                                   index, exc)
                else:
                    self._xid_watched.add(index)
        except nvml.NVMLError as exc:
            self._log_once("xid", "XID events not watched: %s", exc)

    def _shutdown(self) -> None:
        if not self._ready:
            return
        nvml = self._nvml
        self._ready = False
        try:
            if self._events is not None:
                nvml.nvmlEventSetFree(self._events)
            nvml.nvmlShutdown()
        except nvml.NVMLError as exc:
            log.debug("%s: NVML shutdown: %s", self.name, exc)
        self._events = None
        self._xid_watched = set()

    def _log_once(self, key: str, message: str, *args: Any, level: int = logging.INFO) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.log(level, f"%s: {message}", self.name, *args)

    # -- reading -------------------------------------------------------------------------

    def _read_gpus(self, rows: GpuRows) -> int:
        nvml = self._nvml
        self._drain_xids()
        count = nvml.nvmlDeviceGetCount()
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            except nvml.NVMLError as exc:  # this GPU only: lost, or needs a reset
                self._log_once(f"{index}-lost-{exc.value}", "GPU %d cannot be read: %s", index,
                               exc, level=logging.WARNING)
                rows.add(index, "", "nvml_gpu_up", 0, {"reason": str(exc)})
                continue
            rows.add(index, uuid, "nvml_gpu_up", 1)
            self._read_gpu(rows, index, uuid, handle)
        return count

    def _read(self, index: int, what: str, read: Callable[[], Any]) -> Any:
        """``read()``, or None when the GPU does not support it or it failed (logged once)."""
        nvml = self._nvml
        try:
            return read()
        except nvml.NVMLError as exc:
            if exc.value != nvml.NVML_ERROR_NOT_SUPPORTED:
                self._log_once(f"{index}-{what}-{exc.value}", "GPU %d: reading %s failed: %s",
                               index, what, exc)
            return None

    def _read_gpu(self, rows: GpuRows, index: int, uuid: str, handle: Any) -> None:
        nvml = self._nvml

        def add(metric: str, value: Any, labels: dict[str, str] | None = None) -> None:
            if value is not None:
                rows.add(index, uuid, f"nvml_{metric}", value, labels)

        name = self._read(index, "name", lambda: _text(nvml.nvmlDeviceGetName(handle)))
        pci = self._read(index, "pci", lambda: _text(nvml.nvmlDeviceGetPciInfo(handle).busId))
        add("gpu_info", 1, {"name": name or "", "pci_bus_id": pci or ""})
        utilization = self._read(index, "utilization",
                                 lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
        if utilization is not None:
            add("gpu_utilization_percent", utilization.gpu)
            add("memory_utilization_percent", utilization.memory)
        memory = self._read(index, "memory", lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        if memory is not None:
            add("memory_used_bytes", memory.used)
            add("memory_total_bytes", memory.total)
            add("memory_free_bytes", memory.free)
        power = self._read(index, "power", lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        add("power_usage_watts", None if power is None else power / 1000)  # NVML: milliwatts
        limit = self._read(index, "power limit",
                           lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
        add("power_limit_watts", None if limit is None else limit / 1000)
        add("temperature_celsius", self._read(index, "temperature", lambda: (
            nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))))
        add("sm_clock_mhz", self._read(index, "SM clock", lambda: (
            nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM))))
        add("memory_clock_mhz", self._read(index, "memory clock", lambda: (
            nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM))))
        ecc_kinds = [
            (error, error_name, counter, counter_name)
            for error, error_name in ((nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, "corrected"),
                                      (nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, "uncorrected"))
            for counter, counter_name in ((nvml.NVML_VOLATILE_ECC, "volatile"),
                                          (nvml.NVML_AGGREGATE_ECC, "aggregate"))
        ]
        for error, error_name, counter, counter_name in ecc_kinds:
            errors = self._read(index, "ECC errors", lambda e=error, c=counter: (
                nvml.nvmlDeviceGetTotalEccErrors(handle, e, c)))
            add("ecc_errors_total", errors, {"type": error_name, "counter": counter_name})
        if index in self._xid_watched:
            add("xid_errors_total", self._xid_counts.get(index, 0))
            add("last_xid", self._last_xid.get(index, 0))
        if self.settings.processes:
            self._read_processes(index, handle, add)

    def _read_processes(self, index: int, handle: Any, add: Callable[..., None]) -> None:
        nvml = self._nvml
        for kind, list_processes in (("compute", nvml.nvmlDeviceGetComputeRunningProcesses),
                                     ("graphics", nvml.nvmlDeviceGetGraphicsRunningProcesses)):
            processes = self._read(index, f"{kind} processes", lambda f=list_processes: f(handle))
            for process in processes or []:
                if process.usedGpuMemory is None:  # not available (e.g. Windows WDDM)
                    continue
                try:
                    process_name = _text(nvml.nvmlSystemGetProcessName(process.pid))
                except nvml.NVMLError:
                    process_name = ""  # gone, or in another PID namespace
                add("process_memory_used_bytes", process.usedGpuMemory,
                    {"pid": str(process.pid), "process": process_name, "kind": kind})

    def _drain_xids(self) -> None:
        """Count the XID events NVML queued since the last tick, without waiting."""
        if self._events is None:
            return
        nvml = self._nvml
        for _ in range(MAX_EVENTS_PER_TICK):
            try:
                event = nvml.nvmlEventSetWait(self._events, 0)
            except nvml.NVMLError as exc:
                if exc.value != nvml.NVML_ERROR_TIMEOUT:
                    self._log_once(f"xid-wait-{exc.value}", "reading XID events failed: %s", exc)
                return
            if event.eventType != nvml.nvmlEventTypeXidCriticalError:
                continue
            try:
                index = nvml.nvmlDeviceGetIndex(event.device)
            except nvml.NVMLError:
                continue
            self._xid_counts[index] = self._xid_counts.get(index, 0) + 1
            self._last_xid[index] = int(event.eventData)
            log.warning("%s: GPU %d reported XID %d", self.name, index, event.eventData)


# -- DCGM exporter -------------------------------------------------------------------------


class DcgmExporterPoller:
    """Scrapes a dcgm-exporter into ``gpu_metrics``.

    Each sample keeps its DCGM field name as the metric (``DCGM_FI_DEV_GPU_UTIL``,
    ``DCGM_FI_PROF_PIPE_TENSOR_ACTIVE``); the ``gpu`` and ``UUID`` labels become ``gpu`` and
    ``gpu_uuid``, ``Hostname`` becomes ``host``, and the other labels (``modelName``,
    ``pci_bus_id``, ``device``, ``DCGM_FI_DRIVER_VERSION``, ``err_code``, MIG's ``GPU_I_ID``,
    Kubernetes' ``pod``/``namespace``/``container``) stay in ``labels``. DCGM's "blank"
    sentinels (a field the GPU does not support, printed as 9223372036854775794) are left out.
    """

    def __init__(
        self,
        settings: DcgmExporterSettings | None = None,
        *,
        session: requests.Session | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.settings = settings or DcgmExporterSettings()
        self.name = self.settings.name
        self.interval_s = self.settings.interval_s
        self._own_session = session is None
        self._session = session if session is not None else requests.Session()
        self._clock = clock
        self._url_host = urlparse(self.settings.url).hostname or ""

    def collect(self) -> Sequence[MetricRows]:
        """Scrape once; raise ``CollectorError`` if the exporter did not answer."""
        url = self.settings.url
        rows = GpuRows(self.settings.host or self._url_host, self._clock())
        response = http_get(self._session, url, service="DCGM exporter",
                            timeout_s=self.settings.timeout_s)
        try:
            samples = parse_samples(response.text)
        except PromTextError as exc:
            raise CollectorError(f"DCGM exporter at {url}: not Prometheus text: {exc}") from exc
        for sample in samples:
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

    def close(self) -> None:
        """Close the HTTP session if this poller created it."""
        if self._own_session:
            self._session.close()


def is_dcgm_blank(value: float) -> bool:
    """True for DCGM's placeholders for a missing value, never real readings."""
    value = float(value)  # the int64 sentinels all round to 2**63 as floats
    return value >= DCGM_INT64_BLANK or DCGM_FP64_BLANK <= value < DCGM_FP64_BLANK + 16


# -- by hand -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Collect GPU metrics and print the rows as JSON; exit 1 when no GPU could be read."""
    parser = argparse.ArgumentParser(prog="python -m collectors.gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--once", action="store_true", help="collect once and exit")
    parser.add_argument("--dcgm-url", help="scrape this dcgm-exporter instead of using NVML")
    parser.add_argument("--interval", type=float, default=15.0, help="seconds between ticks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    poller: NvmlGpuPoller | DcgmExporterPoller
    if args.dcgm_url:
        poller = DcgmExporterPoller(DcgmExporterSettings(url=args.dcgm_url))
    else:
        poller = NvmlGpuPoller(NvmlSettings(interval_s=args.interval))
    try:
        while True:
            try:
                result = poller.collect()
            except CollectorError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            rows = [dict(zip(r.columns, values, strict=True))
                    for r in result for values in zip(*r.columns.values(), strict=True)]
            print(json.dumps(rows, indent=1), flush=True)
            if isinstance(poller, NvmlGpuPoller):
                print(f"nvml: {poller.status}", file=sys.stderr)
            if args.once:
                up = [r["value"] for r in rows if r["metric"] == "nvml_up"]
                return 1 if up == [0.0] else 0
            time.sleep(args.interval)
    finally:
        poller.close()


if __name__ == "__main__":
    sys.exit(main())
