"""GPU metrics of this machine into ``gpu_metrics``, read through NVML.

On a machine without a GPU, a driver or the NVML library, ``NvmlGpuPoller`` keeps running:
each tick it tries NVML again and stores one ``nvml_up`` row of 0 whose ``reason`` label says
why, logging one line when that state begins or changes, never a traceback per tick.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from telemetry.clock import Clock, utc_now
from telemetry.extras import MissingExtraError, require

from .base import MetricRows
from .gpu import GpuRows

log = logging.getLogger("watchloop.collectors")

MAX_EVENTS_PER_TICK = 1000


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
                self._nvml = require("pynvml", "the NVML GPU poller")
            except MissingExtraError as exc:
                self._set_unavailable(str(exc))
                return
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
