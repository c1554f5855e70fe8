"""The monitor runner writes every monitor's results to the store, on demand and on schedule."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from drift import (
    EvidentlyReport,
    MonitorRunner,
    MonitorSettings,
    ProfileBuilder,
    ProfileRepository,
    latest_metrics,
)
from drift.frames import log_columns
from drift.report import synthesize
from drift.slo import floor_minute
from telemetry import TelemetryWriter

NOW = floor_minute(datetime.now(UTC)) - timedelta(minutes=10) + timedelta(seconds=20)
SETTINGS = {
    "interval": "100ms",
    "drift": {"window": "1h", "min_rows": 50},
    "quality": {"window": "2h"},
    "latency": {"window": "1h"},
    "slos": [{"name": "fraud-availability", "model": "fraud", "kind": "availability",
              "objective": 0.99}],
}


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "amount": rng.lognormal(3 + shift, 1, n),
        "hour": rng.integers(0, 24, n).astype(float),
        "country": rng.choice(["DE", "FR", "US"], n),
        "score": rng.random(n),
    })


def _serve(store, frame, model: str, version: str, start: datetime, minutes: int,
           status=None) -> list[str]:
    times = np.linspace(_ms(start), _ms(start + timedelta(minutes=minutes)), len(frame))
    ids = [f"{model}-{version}-{i}" for i in range(len(frame))]
    store.insert_columns("inference_logs", log_columns(
        frame, model, version, times.astype(int), _ms(start), prediction="score",
        request_ids=ids, status=status if status is not None else "ok"))
    return ids


@pytest.fixture
def served(store):
    """fraud v7 with a profile (its amount drifted) and labels; churn v1 without a profile."""
    start = NOW - timedelta(minutes=50)
    statuses = ["error" if i % 20 == 0 else "ok" for i in range(1200)]
    ids = _serve(store, _frame(1200, 1, shift=1.0), "fraud", "7", start, 45, statuses)
    _serve(store, _frame(300, 2), "churn", "1", start, 45)
    profile = ProfileBuilder(clock=lambda: NOW - timedelta(days=1)).from_frame(
        _frame(5000, 3), "fraud", "7", prediction="score")
    ProfileRepository(store, clock=lambda: NOW - timedelta(days=1)).save(profile)
    truth = (np.random.default_rng(4).random(1200) < 0.5).astype(int)
    TelemetryWriter(store, clock=lambda: NOW - timedelta(minutes=1)).write_labels(
        [{"request_id": r, "label": int(y), "label_time": NOW - timedelta(minutes=1)}
         for r, y in zip(ids[:600], truth[:600], strict=True)], "test")
    TelemetryWriter(store, clock=lambda: NOW + timedelta(hours=1)).write_labels(
        [{"request_id": r, "label": int(y), "label_time": NOW + timedelta(hours=1)}
         for r, y in zip(ids[600:], truth[600:], strict=True)], "test")
    return store


def test_a_run_writes_drift_quality_traffic_and_slo_results(served):
    store = served
    runner = MonitorRunner(MonitorSettings.model_validate(SETTINGS), store, clock=lambda: NOW)
    summary = runner.run_once(NOW)
    assert summary.errors == []
    assert summary.versions == [("churn", "1"), ("fraud", "7")]
    assert "drift churn/1: no reference profile" in summary.skipped

    [drift] = summary.drift
    assert drift.get("amount").drifted and not drift.get("country").drifted
    rows = store.query_dicts(
        "SELECT feature, method, score, drifted, ts FROM drift_results "
        "WHERE model = 'fraud' AND model_version = '7' ORDER BY feature")
    by_feature = {r["feature"]: r for r in rows}
    assert set(by_feature) == {"__dataset__", "__prediction__", "amount", "country", "hour"}
    assert by_feature["amount"]["score"] == pytest.approx(drift.get("amount").score)
    assert by_feature["amount"]["drifted"] == 1
    assert by_feature["__dataset__"]["score"] == pytest.approx(1 / 3)
    assert {r["ts"].replace(tzinfo=UTC) for r in rows} == {NOW}

    # quality: only the 600 labels ingested by NOW count; failed requests are left out
    [quality] = [q for q in summary.quality if q.model == "fraud"]
    assert quality.labelled == sum(1 for i in range(600) if i % 20)
    written = latest_metrics(store, "fraud", "7", "quality")
    assert written["accuracy"] == pytest.approx(quality.metrics["accuracy"])
    assert written["labelled"] == quality.labelled

    traffic = latest_metrics(store, "fraud", "7", "latency")
    assert traffic["requests"] == 1200 and traffic["errors"] == 60
    assert traffic["error_rate"] == pytest.approx(0.05)

    burn = store.query(
        "SELECT labels['window'], value FROM monitor_results WHERE monitor = 'slo' "
        "AND metric = 'burn_rate' AND model = 'fraud' ORDER BY value")
    [status] = summary.slos
    assert dict(burn) == {"5m": 0.0, "30m": pytest.approx(status.burn(timedelta(minutes=30))
                                                          .burn_rate),
                          "1h": pytest.approx(5.0), "6h": pytest.approx(5.0),
                          "3d": pytest.approx(5.0)}
    assert summary.rows_written == store.scalar(
        "SELECT (SELECT count() FROM drift_results) + (SELECT count() FROM monitor_results)")


def test_a_backtest_sees_only_what_was_known_then(served):
    store = served
    later = NOW + timedelta(minutes=30)
    profile = ProfileBuilder(clock=lambda: later).from_frame(_frame(2000, 6), "churn", "1")
    ProfileRepository(store, clock=lambda: later).save(profile)
    runner = MonitorRunner(MonitorSettings.model_validate(SETTINGS), store)

    then = runner.run_once(NOW)  # as of NOW: no churn profile yet, half of fraud's labels
    assert "drift churn/1: no reference profile" in then.skipped
    [quality] = [q for q in then.quality if q.model == "fraud"]
    assert quality.labelled == sum(1 for i in range(600) if i % 20)

    after_profile = runner.run_once(NOW + timedelta(minutes=35))
    assert {d.model for d in after_profile.drift} == {"churn", "fraud"}
    after_labels = runner.run_once(NOW + timedelta(minutes=65))
    [quality] = [q for q in after_labels.quality if q.model == "fraud"]
    assert quality.labelled == sum(1 for i in range(1200) if i % 20)


def test_the_runner_runs_on_a_schedule_until_stopped(served):
    runner = MonitorRunner(MonitorSettings.model_validate(SETTINGS), served, clock=lambda: NOW)
    assert runner.name == "monitors"
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while runner.last is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        runner.stop()
    assert runner.last is not None and runner.last.drift
    assert not runner.running


def test_an_evidently_report_of_a_window(served):
    profile = ProfileRepository(served).latest("fraud", "7")
    html = EvidentlyReport(served, max_rows=500).html(
        profile, NOW - timedelta(hours=1), NOW)
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html[:500].lower()
    assert "amount" in html and "country" in html


def test_a_reference_drawn_from_a_profile_resembles_the_training_data():
    training = _frame(20000, 5)
    profile = ProfileBuilder().from_frame(training, "fraud", "7", prediction="score")
    drawn = synthesize(profile, 20000, seed=1)
    assert drawn["amount"].median() == pytest.approx(training["amount"].median(), rel=0.05)
    assert set(drawn["hour"].unique()) == set(training["hour"].unique())
    shares = drawn["country"].value_counts(normalize=True)
    assert shares.to_dict() == pytest.approx(
        training["country"].value_counts(normalize=True).to_dict(), abs=0.02)
