"""The console's first page, run headless by Streamlit's AppTest over a real store."""

from __future__ import annotations

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from telemetry import TelemetryWriter

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


def _run() -> AppTest:
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    assert not app.exception, [e.message for e in app.exception]
    return app


def test_an_empty_store_shows_zero_rows_and_no_dead_letters(console_store):
    app = _run()
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Inference logs"] == "0"
    assert metrics["Newest ingest"] == "never"
    assert metrics["Dead letters"] == "0"
    assert any("No dead letters" in s.value for s in app.success)
    assert any("No inference logs in this time range" in i.value for i in app.info)


def test_the_store_page_shows_rows_traffic_and_dead_letter_reasons(console_store):
    writer = TelemetryWriter(console_store)
    now = time.time()
    writer.write_logs([{"request_id": f"r{i}", "model": "fraud", "version": "2",
                        "event_time": now, "latency_ms": 1.0 + i} for i in range(40)], "t")
    writer.write_logs([{"model": "fraud"}, "{oops"], "kafka")
    app = _run()
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Inference logs"] == "40"
    assert metrics["Dead letters"] == "2"
    assert metrics["Newest ingest"].endswith("s ago")
    tables = app.dataframe[0].value.set_index("table")
    assert tables.loc["inference_logs", "rows"] == 40
    traffic = app.dataframe[1].value
    assert traffic.loc[0, "requests"] == 40 and traffic.loc[0, "model_version"] == "2"
    reasons = app.dataframe[2].value
    assert set(reasons["source"]) == {"kafka"} and reasons["records"].sum() == 2


def _lag_row(store, group: str, partition: int, lag: int, status: str, reason: str) -> None:
    now = store.now()
    store.insert("kafka_lag", [[now, now, "main", group, "features", partition, 100, 100 + lag,
                                lag, lag / 10, status, reason]],
                 ["ts", "ingest_time", "cluster", "consumer_group", "topic", "partition",
                  "committed_offset", "log_end_offset", "lag_messages", "lag_seconds",
                  "status", "reason"])


def test_the_pipelines_page_shows_failing_collectors_lag_status_and_gpus(console_store):
    from collectors.dcgm import DcgmExporterPoller, DcgmExporterSettings
    from collectors.health import HealthBoard
    from collectors.runner import CollectorRunner

    class DeadExporter(DcgmExporterPoller):
        def collect(self):
            from collectors.base import CollectorError
            raise CollectorError("dcgm-exporter at http://10.0.0.9:9400/metrics: refused")

    board = HealthBoard()
    runner = CollectorRunner(console_store, TelemetryWriter(console_store), health=board,
                             pollers=[DeadExporter(DcgmExporterSettings())])
    board.failed("dcgm-exporter", "dcgm-exporter at http://10.0.0.9:9400/metrics: refused",
                 store=False)
    runner.write_health()
    _lag_row(console_store, "fraud-features", 0, 0, "OK", "")
    _lag_row(console_store, "fraud-features", 1, 5000, "STALL",
             "committed offset stuck at 100 for 5 samples while lag is 5000")
    now = console_store.now()
    console_store.insert(
        "gpu_metrics",
        [[now, now, "gpu-node-1", gpu, f"GPU-{gpu}", metric, value, {}]
         for gpu in (0, 1)
         for metric, value in (("DCGM_FI_DEV_GPU_UTIL", 87.0 + gpu),
                               ("DCGM_FI_DEV_FB_USED", 1024.0))],
        ["ts", "ingest_time", "host", "gpu", "gpu_uuid", "metric", "value", "labels"])
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    app.switch_page("pages/pipelines.py").run()
    assert not app.exception, [e.message for e in app.exception]
    errors = [e.value for e in app.error]
    assert any("dcgm-exporter" in e and "refused" in e for e in errors)
    warnings = [w.value for w in app.warning]
    assert any("fraud-features" in w and "STALL" in w and "stuck at 100" in w
               for w in warnings)
    lag = app.dataframe[1].value
    assert lag.loc[0, "lag_messages"] == 5000 and lag.loc[0, "partitions"] == 2
    gpus = app.dataframe[2].value
    assert list(gpus["util_percent"]) == [87.0, 88.0]
    assert list(gpus["memory_used_bytes"]) == [1024.0 * 1048576] * 2
