"""Monitor results carry their evidence: too little data is said, never scored.

Alert rules page people on these rows, so each claim here is one a rule relies on: a score
exists only above the minimum of rows or labels, an empty window is written as ``no_data``
(so the newest row is never an old one), undefined ratios are NULL, and burn rates say how
much of their window data covers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from drift import (
    MonitorRunner,
    MonitorSettings,
    ProfileBuilder,
    ProfileRepository,
    QualityMonitor,
    QualitySettings,
    latest_metrics,
)
from drift.frames import log_columns
from drift.runner import RunSummary
from drift.settings import SLOSettings
from drift.slo import SLOMonitor, floor_minute
from telemetry import TelemetryWriter

NOW = floor_minute(datetime.now(UTC)) - timedelta(minutes=10) + timedelta(seconds=20)
PROFILED = NOW - timedelta(days=1)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _serve(store, frame: pd.DataFrame, start: datetime, minutes: float, *, version="7",
           prefix="r") -> list[str]:
    times = np.linspace(_ms(start), _ms(start + timedelta(minutes=minutes)), len(frame))
    ids = [f"{prefix}-{i}" for i in range(len(frame))]
    store.insert_columns("inference_logs", log_columns(
        frame, "fraud", version, times.astype(int), _ms(start), prediction="score",
        request_ids=ids))
    return ids


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"amount": rng.lognormal(3, 1, n), "hour": rng.integers(0, 24, n)
                         .astype(float), "score": rng.random(n)})


def _profile(store, *, label: bool = True) -> None:
    frame = _frame(3000, 1)
    if label:
        frame["y"] = (np.random.default_rng(2).random(3000) < 0.3).astype(int)
    ProfileRepository(store, clock=lambda: PROFILED).save(
        ProfileBuilder(clock=lambda: PROFILED).from_frame(
            frame, "fraud", "7", prediction="score", label="y" if label else None))


def _labels(store, ids: list[str], at: datetime) -> None:
    TelemetryWriter(store, clock=lambda: at).write_labels(
        [{"request_id": r, "label": i % 2, "label_time": at} for i, r in enumerate(ids)],
        "test")


def _run(store, at: datetime = NOW, **settings) -> RunSummary:
    runner = MonitorRunner(MonitorSettings.model_validate(
        {"drift": {"window": "30m", "min_rows": 50}, "quality": {"window": "30m"},
         "latency": {"window": "30m"}, **settings}), store)
    summary = runner.run_once(at)
    assert summary.errors == []
    return summary


def _rows(store, sql: str) -> list[dict]:
    return store.query_dicts(sql)


def test_label_drift_and_quality_before_enough_labels_are_insufficient_data(store):
    _profile(store)
    ids = _serve(store, _frame(600, 3), NOW - timedelta(minutes=25), 20)
    _labels(store, ids[:12], NOW - timedelta(minutes=2))  # 12 labels: fewer than 30
    _run(store)

    [label] = _rows(store, "SELECT score, drifted, status, sample_size, window_rows "
                           "FROM drift_results WHERE kind LIKE 'label:%'")
    assert label == {"score": None, "drifted": 0, "status": "insufficient_data",
                     "sample_size": 12, "window_rows": 600}
    quality = {r["metric"]: r for r in _rows(
        store, "SELECT metric, value, status, sample_size, window_rows FROM monitor_results "
               "WHERE monitor = 'quality'")}
    for metric in ("accuracy", "precision", "recall", "f1"):
        assert quality[metric]["value"] is None, metric
        assert quality[metric]["status"] == "insufficient_data"
    assert quality["labelled"]["value"] == 12 and quality["labelled"]["sample_size"] == 12
    assert quality["accuracy"]["window_rows"] == 600


def test_enough_labels_give_label_drift_and_quality_with_their_counts(store):
    _profile(store)
    ids = _serve(store, _frame(600, 3), NOW - timedelta(minutes=25), 20)
    _labels(store, ids[:200], NOW - timedelta(minutes=2))
    _run(store)
    [label] = _rows(store, "SELECT score, status, sample_size FROM drift_results "
                           "WHERE kind LIKE 'label:%' AND method NOT LIKE '%:extra'")
    assert label["status"] == "ok" and label["score"] is not None
    assert label["sample_size"] == 200
    accuracy = latest_metrics(store, "fraud", "7", "quality")["accuracy"]
    assert accuracy is not None and 0 <= accuracy <= 1


def test_one_label_is_not_a_perfect_accuracy(store):
    ids = _serve(store, _frame(100, 3), NOW - timedelta(minutes=25), 20)
    _labels(store, ids[:1], NOW - timedelta(minutes=2))
    report = QualityMonitor(store).evaluate("fraud", "7", NOW - timedelta(minutes=30), NOW)
    assert report.status == "insufficient_data" and report.metrics == {}
    assert (report.labelled, report.requests) == (1, 100)


def test_an_empty_window_writes_no_data_over_the_old_result(store):
    _profile(store)
    _serve(store, _frame(400, 3), NOW - timedelta(minutes=50), 5)
    _run(store, NOW - timedelta(minutes=20))
    assert latest_metrics(store, "fraud", "7", "latency")["latency_p99_ms"] is not None

    # half an hour on, the traffic has left every window: the newest result says so
    summary = _run(store, NOW)
    assert summary.versions == [("fraud", "7")]
    traffic = latest_metrics(store, "fraud", "7", "latency")
    assert traffic["requests"] == 0 and traffic["latency_p99_ms"] is None
    assert traffic["error_rate"] is None
    [dataset] = _rows(store, "SELECT score, drifted, status, window_rows FROM drift_results "
                             "WHERE feature = '__dataset__' ORDER BY ts DESC LIMIT 1")
    assert dataset == {"score": None, "drifted": 0, "status": "no_data", "window_rows": 0}
    statuses = _rows(store, "SELECT DISTINCT status FROM monitor_results WHERE monitor = "
                            "'quality' AND ts = (SELECT max(ts) FROM monitor_results)")
    assert statuses == [{"status": "no_data"}]

    # once its newest result is no_data, an idle version is not evaluated again
    assert _run(store, NOW + timedelta(minutes=1)).versions == []


def test_every_feature_absent_is_dataset_drift(store):
    _profile(store, label=False)
    # requests that carry no features at all: the feature pipeline stopped sending them
    _serve(store, pd.DataFrame({"score": np.random.default_rng(5).random(300)}),
           NOW - timedelta(minutes=25), 20)
    [report] = _run(store).drift
    rows = {r["feature"]: r for r in _rows(
        store, "SELECT feature, method, score, drifted FROM drift_results")}
    assert rows["amount"]["method"] == "absent" and rows["amount"]["drifted"] == 1
    assert rows["hour"]["method"] == "absent"
    assert rows["__dataset__"]["score"] == 1.0 and rows["__dataset__"]["drifted"] == 1
    assert report.dataset_drifted and report.drifted_features == 2


def test_precision_without_positive_predictions_is_null(store):
    n = 100
    frame = pd.DataFrame({"x": np.arange(n, dtype=float), "score": np.full(n, 0.1)})
    ids = _serve(store, frame, NOW - timedelta(minutes=25), 20)
    _labels(store, ids, NOW - timedelta(minutes=2))  # half positive, none predicted positive
    window = (NOW - timedelta(minutes=30), NOW)
    binary = QualityMonitor(store).evaluate("fraud", "7", *window)
    assert binary.status == "ok" and binary.metrics["precision"] is None
    assert binary.metrics["recall"] == 0.0 and binary.metrics["accuracy"] == 0.5

    # a macro average leaves an undefined class out, as sklearn's zero_division=np.nan does
    sklearn = pytest.importorskip("sklearn.metrics")
    truth, predicted = [str(i % 2) for i in range(n)], ["0"] * n
    TelemetryWriter(store, clock=lambda: NOW).write_logs(
        [{"request_id": f"m-{i}", "model": "fraud", "version": "8",
          "event_time": NOW - timedelta(minutes=5), "latency_ms": 1.0,
          "prediction": predicted[i], "features": {}} for i in range(n)], "test")
    _labels(store, [f"m-{i}" for i in range(n)], NOW)
    macro = QualityMonitor(store, QualitySettings(average="macro")).evaluate(
        "fraud", "8", *window, as_of=NOW + timedelta(seconds=1))
    expected = sklearn.precision_score(truth, predicted, average="macro",
                                       zero_division=np.nan)
    assert macro.metrics["precision"] == pytest.approx(expected)


def test_burn_rates_state_the_share_of_their_window_covered_by_data(store):
    _serve(store, _frame(80, 3), floor_minute(NOW) - timedelta(minutes=8), 7.9)
    slo = SLOSettings(name="avail", kind="availability", objective=0.99)
    status = SLOMonitor(store).evaluate(slo, "fraud", "7", NOW)
    three_days = status.burn(timedelta(days=3))
    assert three_days.requests == 80
    assert three_days.coverage == pytest.approx(8 / (3 * 24 * 60))
    assert status.burn(timedelta(minutes=5)).coverage == 1.0

    _run(store, slos=[{"name": "avail", "kind": "availability", "objective": 0.99}])
    written = {r["window"]: r for r in _rows(
        store, "SELECT labels['window'] AS window, coverage, sample_size FROM monitor_results "
               "WHERE monitor = 'slo' AND metric = 'burn_rate'")}
    assert written["3d"]["coverage"] == pytest.approx(8 / (3 * 24 * 60))
    assert written["3d"]["sample_size"] == 80
