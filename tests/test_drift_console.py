"""The console's drift page shows what the monitor runner wrote (Streamlit AppTest)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from drift import MonitorRunner, MonitorSettings, ProfileBuilder, ProfileRepository
from drift.frames import log_columns
from drift.slo import floor_minute

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
NOW = floor_minute(datetime.now(UTC)) - timedelta(minutes=5) + timedelta(seconds=10)


def _app(tmp_path: Path) -> AppTest:
    test = AppTest.from_file(str(APP), default_timeout=60)
    test.run()
    test.switch_page("pages/drift.py").run()
    assert not test.exception, [e.message for e in test.exception]
    return test


def test_the_page_says_when_there_is_nothing_yet(console_store, tmp_path):
    app = _app(tmp_path)
    assert any("No monitor results yet" in i.value for i in app.info)


def test_the_page_shows_drift_quality_and_traffic(console_store, tmp_path):
    rng = np.random.default_rng(1)
    current = pd.DataFrame({"amount": rng.normal(3, 1, 800), "score": rng.random(800)})
    start = NOW - timedelta(minutes=40)
    times = np.linspace(start.timestamp() * 1000, (NOW.timestamp() - 120) * 1000, 800)
    console_store.insert_columns("inference_logs", log_columns(
        current, "fraud", "7", times.astype(int), int(start.timestamp() * 1000),
        prediction="score"))
    reference = pd.DataFrame({"amount": rng.normal(0, 1, 3000), "score": rng.random(3000)})
    ProfileRepository(console_store, clock=lambda: NOW - timedelta(days=1)).save(
        ProfileBuilder().from_frame(reference, "fraud", "7", prediction="score"))
    settings = MonitorSettings.model_validate(
        {"drift": {"min_rows": 10}, "slos": [{"name": "avail", "kind": "availability",
                                               "objective": 0.99}]})
    assert MonitorRunner(settings, console_store).run_once(NOW).errors == []

    app = _app(tmp_path)
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Drifted features"] == "100%" and metrics["Dataset drift"] == "yes"
    table = app.dataframe[0].value.set_index("feature")
    assert bool(table.loc["amount", "drifted"]) and table.loc["amount", "method"] == "wasserstein"
    assert any("Insufficient data: 0 labels joined" in w.value for w in app.warning)
    slos = app.dataframe[1].value
    assert set(slos.slo) == {"avail"}
