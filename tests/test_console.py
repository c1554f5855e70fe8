"""The console's first page, run headless by Streamlit's AppTest over a real store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from dashboard import shared
from telemetry import TelemetryWriter

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


@pytest.fixture
def console_store(store) -> Iterator:
    # Query results are cached per process for a few seconds; each test has a fresh store.
    st.cache_data.clear()
    st.cache_resource.clear()
    shared.use_store(store)
    yield store
    shared.use_store(None)


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
