"""GPU metrics: a DCGM exporter's real output format, and NVML with or without a GPU."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest

from collectors.base import CollectorError, MetricPoller, MetricRows
from collectors.dcgm import DcgmExporterPoller, DcgmExporterSettings
from collectors.nvml import NvmlGpuPoller, NvmlSettings
from telemetry import Store
from telemetry.clock import epoch_ms
from watchloop.services.base import free_port

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent


# Near the real time: the table's 30-day TTL would drop rows from a fixed date in the past.
NOW = datetime.now(UTC).replace(microsecond=0)


def clock() -> datetime:
    return NOW


def rows_of(result: list[MetricRows]) -> list[dict]:
    assert [r.table for r in result] == ["gpu_metrics"]
    columns = result[0].columns
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def value(rows: list[dict], gpu: int, metric: str) -> float:
    [found] = [r["value"] for r in rows if r["gpu"] == gpu and r["metric"] == metric]
    return found


def nvml_works() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


# -- DCGM exporter -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exporter() -> Iterator[str]:
    """An HTTP server on a free port answering like a dcgm-exporter, from tests/data."""
    pages = {
        "/metrics": (DATA / "dcgm_exporter_h100x2.txt").read_bytes(),
        "/blank": (DATA / "dcgm_exporter_blank_values.txt").read_bytes(),
        "/html": b"<!DOCTYPE html><html><body>login</body></html>",
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            body = pages.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.end_headers()
            self.wfile.write(body or b"not found")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_dcgm_exporter_samples_land_per_gpu_with_their_labels(exporter: str, store: Store) -> None:
    poller = DcgmExporterPoller(DcgmExporterSettings(url=f"{exporter}/metrics"), clock=clock)
    assert isinstance(poller, MetricPoller)
    try:
        result = list(poller.collect())
    finally:
        poller.close()
    rows = rows_of(result)

    assert len(rows) == 25 * 2  # every field of dcp-metrics-included.csv, for both GPUs
    assert {r["host"] for r in rows} == {"dgx-h100-07"}
    assert {(r["gpu"], r["gpu_uuid"]) for r in rows} == {
        (0, "GPU-6a3b9c1e-54d2-8f07-b1a9-3e5c7d20f4a1"),
        (1, "GPU-c2f81d57-0b6e-49a3-9d12-7ae4f08b65c3"),
    }
    assert value(rows, 0, "DCGM_FI_DEV_GPU_UTIL") == 87
    assert value(rows, 1, "DCGM_FI_DEV_GPU_UTIL") == 0
    assert value(rows, 0, "DCGM_FI_DEV_FB_USED") == 32386
    assert value(rows, 1, "DCGM_FI_DEV_FB_FREE") == 80981
    assert value(rows, 0, "DCGM_FI_DEV_POWER_USAGE") == pytest.approx(512.347)
    assert value(rows, 0, "DCGM_FI_DEV_SM_CLOCK") == 1980
    assert value(rows, 1, "DCGM_FI_DEV_GPU_TEMP") == 29
    assert value(rows, 0, "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE") == pytest.approx(0.473118)
    assert value(rows, 0, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION") == 4815162342108
    [xid] = [r for r in rows if r["gpu"] == 1 and r["metric"] == "DCGM_FI_DEV_XID_ERRORS"]
    assert xid["value"] == 94
    assert xid["labels"]["err_msg"] == "Contained ECC error"
    assert rows[0]["labels"] == {
        "pci_bus_id": "00000000:18:00.0",
        "device": "nvidia0",
        "modelName": "NVIDIA H100 80GB HBM3",
        "DCGM_FI_DRIVER_VERSION": "550.90.07",
    }
    assert {r["ts"] for r in rows} == {epoch_ms(clock())}

    assert store.insert_columns(result[0].table, result[0].columns) == len(rows)
    used = store.query(
        "SELECT gpu, gpu_uuid, value FROM gpu_metrics WHERE metric = 'DCGM_FI_DEV_FB_USED' "
        "ORDER BY gpu"
    )
    assert used == [
        (0, "GPU-6a3b9c1e-54d2-8f07-b1a9-3e5c7d20f4a1", 32386.0),
        (1, "GPU-c2f81d57-0b6e-49a3-9d12-7ae4f08b65c3", 0.0),
    ]


def test_dcgm_blank_sentinels_are_not_stored_as_readings(exporter: str) -> None:
    # The exporter's README shows MEMORY_TEMP as 9223372036854775794: DCGM's "not supported".
    poller = DcgmExporterPoller(DcgmExporterSettings(url=f"{exporter}/blank"), clock=clock)
    try:
        rows = rows_of(list(poller.collect()))
    finally:
        poller.close()
    assert {r["metric"]: r["value"] for r in rows} == {
        "DCGM_FI_DEV_SM_CLOCK": 139,
        "DCGM_FI_DEV_MEM_CLOCK": 405,
    }
    assert {r["host"] for r in rows} == {"127.0.0.1"}  # no Hostname label: the exporter's host
    assert rows[0]["labels"] == {"container": "", "namespace": "", "pod": ""}


def test_dcgm_exporter_down_or_wrong_is_a_collector_error_naming_the_address(
    exporter: str,
) -> None:
    port = free_port()
    closed = DcgmExporterPoller(DcgmExporterSettings(url=f"http://127.0.0.1:{port}/metrics"))
    with pytest.raises(CollectorError, match=rf"DCGM exporter at .*127\.0\.0\.1:{port}.*refused"):
        closed.collect()
    closed.close()
    wrong = DcgmExporterPoller(DcgmExporterSettings(url=f"{exporter}/html"))
    with pytest.raises(CollectorError, match=r"/html: not Prometheus text: line 1"):
        wrong.collect()
    wrong.close()


# -- NVML ----------------------------------------------------------------------------------


def test_without_a_gpu_nvml_reports_it_each_tick_and_logs_it_once(
    caplog: pytest.LogCaptureFixture, store: Store
) -> None:
    if nvml_works():
        pytest.skip("this machine has NVML: the no-GPU path cannot be shown here")
    poller = NvmlGpuPoller(NvmlSettings(host="cpu-box"), clock=clock)
    with caplog.at_level(logging.INFO, logger="watchloop.collectors"):
        results = [list(poller.collect()) for _ in range(3)]
    poller.close()
    ticks = [rows_of(result) for result in results]

    for rows in ticks:
        [row] = rows
        assert (row["host"], row["gpu"], row["gpu_uuid"], row["metric"], row["value"]) == (
            "cpu-box", 0, "", "nvml_up", 0.0)
        assert row["labels"]["status"] == "unavailable"
        assert "NVML Shared Library Not Found" in row["labels"]["reason"]
    assert poller.status.startswith("unavailable: no NVML on this machine")
    records = [r for r in caplog.records if r.name == "watchloop.collectors"]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING and records[0].exc_info is None
    assert store.insert_columns(results[0][0].table, results[0][0].columns) == 1


def test_gpu_command_prints_the_rows_as_json() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "watchloop.cli", "gpu", "--once"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    rows = json.loads(done.stdout)
    [up] = [r for r in rows if r["metric"] == "nvml_up"]
    if up["value"] == 1:
        assert done.returncode == 0
        assert any(r["metric"] == "nvml_memory_total_bytes" for r in rows)
    else:
        assert done.returncode == 1
        assert "GPU metrics unavailable" in done.stderr
        assert "Traceback" not in done.stderr


def test_nvml_reads_every_gpu_on_a_gpu_machine() -> None:
    if not nvml_works():
        pytest.skip("no NVML here: run on a GPU machine (watchloop gpu --once)")
    poller = NvmlGpuPoller()
    try:
        rows = rows_of(list(poller.collect()))
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    finally:
        poller.close()
    assert value(rows, 0, "nvml_up") == 1
    assert [r["value"] for r in rows if r["metric"] == "nvml_gpu_count"] == [count]
    for gpu in range(count):
        assert value(rows, gpu, "nvml_gpu_up") == 1
        assert value(rows, gpu, "nvml_memory_total_bytes") > 0
        assert value(rows, gpu, "nvml_temperature_celsius") > 0
        [uuid] = {r["gpu_uuid"] for r in rows if r["gpu"] == gpu} - {""}
        assert uuid.startswith(("GPU-", "MIG-"))


class StandInNvml:
    """Two GPUs behind the pynvml API (constants and errors are pynvml's own), for the parts
    of the GPU path this machine cannot reach: units, unsupported readings, XID events, and
    NVML failing mid-run."""

    def __init__(self) -> None:
        self.events: list[SimpleNamespace] = []
        self.broken = False
        self.lost = False
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(pynvml, name)

    def nvmlInit(self) -> None:  # noqa: N802 (pynvml's names)
        self.calls.append("init")
        self.broken = False

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.calls.append("shutdown")

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        return "550.90.07"

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        if self.broken:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        if self.lost and index == 1:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return index

    def nvmlDeviceGetIndex(self, handle: int) -> int:  # noqa: N802
        return handle

    def nvmlDeviceGetUUID(self, handle: int) -> str:  # noqa: N802
        return f"GPU-0000000{handle}-aaaa-bbbb-cccc-dddddddddddd"

    def nvmlDeviceGetName(self, handle: int) -> str:  # noqa: N802
        return "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetPciInfo(self, handle: int) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(busId=f"00000000:{18 + handle}:00.0".encode())

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(gpu=87 - 80 * handle, memory=41)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(total=85520809984, used=33959378944, free=51561431040)

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:  # noqa: N802
        return 512347  # milliwatts

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: int) -> int:  # noqa: N802
        return 700000

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:  # noqa: N802
        if handle == 1:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)
        return 57

    def nvmlDeviceGetClockInfo(self, handle: int, kind: int) -> int:  # noqa: N802
        return {pynvml.NVML_CLOCK_SM: 1980, pynvml.NVML_CLOCK_MEM: 2619}[kind]

    def nvmlDeviceGetTotalEccErrors(self, handle: int, error: int, counter: int) -> int:  # noqa: N802
        if handle == 1:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return 3 if error == pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED else 0

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list:  # noqa: N802
        return [SimpleNamespace(pid=4242, usedGpuMemory=2**30)] if handle == 0 else []

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: int) -> list:  # noqa: N802
        return [SimpleNamespace(pid=77, usedGpuMemory=None)]

    def nvmlSystemGetProcessName(self, pid: int) -> bytes:  # noqa: N802
        return b"python"

    def nvmlEventSetCreate(self) -> str:  # noqa: N802
        return "event-set"

    def nvmlDeviceRegisterEvents(self, handle: int, types: int, events: str) -> None:  # noqa: N802
        pass

    def nvmlEventSetWait(self, events: str, timeout_ms: int) -> SimpleNamespace:  # noqa: N802
        if not self.events:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT)
        return self.events.pop(0)

    def nvmlEventSetFree(self, events: str) -> None:  # noqa: N802
        self.calls.append("free")


def test_nvml_gpu_path_units_errors_and_recovery_with_a_stand_in_library(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nvml = StandInNvml()
    poller = NvmlGpuPoller(NvmlSettings(host="gpu-box"), nvml=nvml, clock=clock)
    nvml.events.append(SimpleNamespace(
        device=1, eventType=pynvml.nvmlEventTypeXidCriticalError, eventData=79))
    with caplog.at_level(logging.INFO, logger="watchloop.collectors"):
        rows = rows_of(list(poller.collect()))
        poller.collect()
    assert poller.status == "ok: 2 GPUs"
    assert value(rows, 0, "nvml_up") == 1 and value(rows, 0, "nvml_gpu_count") == 2
    assert value(rows, 0, "nvml_power_usage_watts") == pytest.approx(512.347)
    assert value(rows, 0, "nvml_power_limit_watts") == 700
    assert value(rows, 0, "nvml_memory_used_bytes") == 33959378944
    assert value(rows, 1, "nvml_gpu_utilization_percent") == 7
    assert value(rows, 0, "nvml_sm_clock_mhz") == 1980
    assert value(rows, 0, "nvml_temperature_celsius") == 57
    assert not [r for r in rows if r["gpu"] == 1 and r["metric"] == "nvml_temperature_celsius"]
    ecc = {(r["gpu"], r["labels"]["type"], r["labels"]["counter"]): r["value"]
           for r in rows if r["metric"] == "nvml_ecc_errors_total"}
    assert ecc == {(0, "corrected", "volatile"): 3, (0, "corrected", "aggregate"): 3,
                   (0, "uncorrected", "volatile"): 0, (0, "uncorrected", "aggregate"): 0}
    assert (value(rows, 1, "nvml_xid_errors_total"), value(rows, 1, "nvml_last_xid")) == (1, 79)
    assert (value(rows, 0, "nvml_xid_errors_total"), value(rows, 0, "nvml_last_xid")) == (0, 0)
    [process] = [r for r in rows if r["metric"] == "nvml_process_memory_used_bytes"]
    assert (process["gpu"], process["value"], process["labels"]) == (
        0, 2**30, {"pid": "4242", "process": "python", "kind": "compute"})
    [info] = [r for r in rows if r["gpu"] == 1 and r["metric"] == "nvml_gpu_info"]
    assert info["labels"] == {"name": "NVIDIA H100 80GB HBM3", "pci_bus_id": "00000000:19:00.0"}
    assert {r["gpu_uuid"] for r in rows if r["gpu"] == 1} == {
        "GPU-00000001-aaaa-bbbb-cccc-dddddddddddd"}
    # the failing temperature read of GPU 1 is logged once over two ticks, as is the XID
    assert len([m for m in caplog.messages if "temperature" in m]) == 1
    assert len([m for m in caplog.messages if "XID 79" in m]) == 1

    # A GPU falls off the bus: the others are still read.
    nvml.lost = True
    lost = rows_of(list(poller.collect()))
    nvml.lost = False
    assert (value(lost, 1, "nvml_gpu_up"), value(lost, 0, "nvml_gpu_up")) == (0, 1)
    assert [r["labels"]["reason"] for r in lost if r["metric"] == "nvml_gpu_up"
            and r["gpu"] == 1] == ["GPU is lost"]
    assert value(lost, 0, "nvml_sm_clock_mhz") == 1980
    assert {r["metric"] for r in lost if r["gpu"] == 1} == {"nvml_gpu_up"}

    # NVML stops answering (driver reloaded): one row saying so, then it starts again.
    nvml.broken = True
    with caplog.at_level(logging.INFO, logger="watchloop.collectors"):
        [down] = rows_of(list(poller.collect()))
        assert (down["metric"], down["value"]) == ("nvml_up", 0.0)
        assert "NVML stopped answering" in down["labels"]["reason"]
        again = rows_of(list(poller.collect()))
    assert value(again, 0, "nvml_up") == 1
    poller.close()
    assert nvml.calls == ["init", "free", "shutdown", "init", "free", "shutdown"]


def test_nvml_settings_reject_unknown_keys() -> None:
    with pytest.raises(ValueError, match="interval"):
        NvmlSettings.model_validate({"type": "nvml", "interval": 5})
    assert DcgmExporterSettings.model_validate({"type": "dcgm-exporter"}).interval_s == 15


def test_rows_carry_scrape_time_and_ingest_time_from_the_clock() -> None:
    times = iter([clock(), clock() + timedelta(milliseconds=250)])
    poller = NvmlGpuPoller(NvmlSettings(), nvml=StandInNvml(), clock=lambda: next(times))
    rows = rows_of(list(poller.collect()))
    poller.close()
    assert {(r["ts"], r["ingest_time"]) for r in rows} == {
        (epoch_ms(clock()), epoch_ms(clock()) + 250)}
