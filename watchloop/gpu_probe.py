"""``watchloop gpu``: read this machine's GPUs (NVML) or a dcgm-exporter once, or on an
interval, and print the rows ``gpu_metrics`` would store, as JSON."""

from __future__ import annotations

import json
import sys
import time

from collectors.base import CollectorError, MetricRows
from collectors.dcgm import DcgmExporterPoller, DcgmExporterSettings
from collectors.nvml import NvmlGpuPoller, NvmlSettings


def probe(*, once: bool, dcgm_url: str | None, interval_s: float) -> int:
    """Print rows until interrupted (or once); 1 when no GPU could be read."""
    poller: NvmlGpuPoller | DcgmExporterPoller
    if dcgm_url:
        poller = DcgmExporterPoller(DcgmExporterSettings(url=dcgm_url))
    else:
        poller = NvmlGpuPoller(NvmlSettings(interval_s=interval_s))
    try:
        while True:
            try:
                result = poller.collect()
            except CollectorError as exc:
                print(f"watchloop: {exc}", file=sys.stderr)
                return 1
            rows = _dicts(result)
            print(json.dumps(rows, indent=1), flush=True)
            if isinstance(poller, NvmlGpuPoller):
                print(f"nvml: {poller.status}", file=sys.stderr)
            if once:
                up = [r["value"] for r in rows if r["metric"] == "nvml_up"]
                return 1 if up == [0.0] else 0
            time.sleep(interval_s)
    except KeyboardInterrupt:
        return 0
    finally:
        poller.close()


def _dicts(result: list[MetricRows] | tuple[MetricRows, ...]) -> list[dict]:
    return [dict(zip(r.columns, values, strict=True))
            for r in result for values in zip(*r.columns.values(), strict=True)]
