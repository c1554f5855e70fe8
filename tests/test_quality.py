"""Model quality from delayed labels: equal to scikit-learn's, and point-in-time correct."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics

from drift import QualityMonitor, QualitySettings
from drift.frames import log_columns
from telemetry import TelemetryWriter

START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
END = START + timedelta(hours=1)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _predictions(store, prediction, *, version="1", status="ok", prefix="r") -> list[str]:
    frame = pd.DataFrame({"x": np.arange(len(prediction), dtype=float), "out": prediction})
    times = np.linspace(_ms(START), _ms(END) - 1000, len(frame)).astype(int)
    columns = log_columns(frame, "clf", version, times, _ms(START), prediction="out",
                          status=status,
                          request_ids=[f"{prefix}-{version}-{i}" for i in range(len(frame))])
    store.insert_columns("inference_logs", columns)
    return columns["request_id"]


def _label(store, ids, labels, at: datetime) -> None:
    TelemetryWriter(store, clock=lambda: at).write_labels(
        [{"request_id": rid, "label": y, "label_time": at} for rid, y in zip(ids, labels,
                                                                             strict=True)],
        "test")


def _binary(n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    # scores rounded to 2 decimals so that ROC AUC has to handle ties as sklearn does
    scores = np.clip(np.round(0.35 * y + rng.random(n) * 0.65, 2), 0, 1)
    scores[:5] = [0.0, 1.0, 0.0, 1.0, 0.5]  # log loss must clip 0 and 1 as sklearn does
    return y, scores


def test_binary_classifier_metrics_equal_sklearn(store):
    y, scores = _binary(3000, seed=1)
    ids = _predictions(store, scores)
    _label(store, ids, y.tolist(), END + timedelta(hours=1))
    report = QualityMonitor(store).evaluate("clf", "1", START, END)
    predicted = (scores >= 0.5).astype(int)
    assert report.task == "classification" and report.labelled == 3000
    m = report.metrics
    assert m["accuracy"] == pytest.approx(metrics.accuracy_score(y, predicted), rel=1e-12)
    assert m["precision"] == pytest.approx(metrics.precision_score(y, predicted), rel=1e-12)
    assert m["recall"] == pytest.approx(metrics.recall_score(y, predicted), rel=1e-12)
    assert m["f1"] == pytest.approx(metrics.f1_score(y, predicted), rel=1e-12)
    assert m["roc_auc"] == pytest.approx(metrics.roc_auc_score(y, scores), rel=1e-9)
    assert m["log_loss"] == pytest.approx(metrics.log_loss(y, scores), rel=1e-9)


def test_the_decision_threshold_and_positive_label_are_settings(store):
    y, scores = _binary(1000, seed=2)
    ids = _predictions(store, scores)
    _label(store, ids, ["yes" if v else "no" for v in y], END + timedelta(hours=1))
    settings = QualitySettings(positive_label="yes", decision_threshold=0.7)
    report = QualityMonitor(store, settings).evaluate("clf", "1", START, END)
    predicted = (scores >= 0.7).astype(int)
    assert report.metrics["precision"] == pytest.approx(metrics.precision_score(y, predicted))
    assert report.metrics["recall"] == pytest.approx(metrics.recall_score(y, predicted))
    assert report.metrics["roc_auc"] == pytest.approx(metrics.roc_auc_score(y, scores))


def test_multiclass_macro_metrics_equal_sklearn(store):
    rng = np.random.default_rng(3)
    classes = np.array(["browse", "buy", "cancel", "support"])
    truth = rng.choice(classes, 2000, p=[0.4, 0.3, 0.2, 0.1])
    predicted = np.where(rng.random(2000) < 0.7, truth, rng.choice(classes, 2000))
    ids = _predictions(store, predicted.tolist())
    _label(store, ids, truth.tolist(), END + timedelta(hours=1))
    report = QualityMonitor(store, QualitySettings(average="macro")).evaluate(
        "clf", "1", START, END)
    m = report.metrics
    assert m["accuracy"] == pytest.approx(metrics.accuracy_score(truth, predicted))
    for name, func in (("precision", metrics.precision_score), ("recall", metrics.recall_score),
                       ("f1", metrics.f1_score)):
        assert m[name] == pytest.approx(func(truth, predicted, average="macro")), name
    assert "roc_auc" not in m  # no scores, only classes


def test_regression_metrics_equal_sklearn(store):
    rng = np.random.default_rng(4)
    truth = rng.normal(100, 20, 2500)
    predicted = truth + rng.normal(2, 5, 2500)
    ids = _predictions(store, predicted)
    _label(store, ids, truth.tolist(), END + timedelta(hours=1))
    report = QualityMonitor(store).evaluate("clf", "1", START, END)
    assert report.task == "regression"
    assert report.metrics["mae"] == pytest.approx(metrics.mean_absolute_error(truth, predicted))
    assert report.metrics["rmse"] == pytest.approx(
        metrics.root_mean_squared_error(truth, predicted))
    assert report.metrics["mean_error"] == pytest.approx(np.mean(predicted - truth))


def test_a_label_ingested_after_t_does_not_count_as_of_t(store):
    y, scores = _binary(2000, seed=5)
    ids = _predictions(store, scores)
    t1, t2 = END + timedelta(minutes=30), END + timedelta(hours=2)
    _label(store, ids[:1200], y[:1200].tolist(), t1)      # known by t1
    _label(store, ids[1200:], y[1200:].tolist(), t2)      # arrives later
    flipped = (1 - y[:300]).tolist()
    _label(store, ids[:300], flipped, t2)                 # corrections arrive later too
    monitor = QualityMonitor(store)

    as_of_t1 = monitor.evaluate("clf", "1", START, END, as_of=t1 + timedelta(minutes=1))
    assert as_of_t1.labelled == 1200 and as_of_t1.requests == 2000
    assert as_of_t1.label_coverage == pytest.approx(0.6)
    assert as_of_t1.metrics["roc_auc"] == pytest.approx(
        metrics.roc_auc_score(y[:1200], scores[:1200]))

    now = monitor.evaluate("clf", "1", START, END)
    truth_now = np.concatenate([flipped, y[300:]])
    assert now.labelled == 2000
    assert now.metrics["accuracy"] == pytest.approx(
        metrics.accuracy_score(truth_now, (scores >= 0.5).astype(int)))
    before_any = monitor.evaluate("clf", "1", START, END, as_of=END)
    assert before_any.skipped and before_any.labelled == 0


def test_failed_requests_and_other_versions_are_left_out(store):
    y, scores = _binary(500, seed=6)
    ids = _predictions(store, scores)
    failed = _predictions(store, scores, status="error", prefix="failed")
    other = _predictions(store, 1 - scores, version="2")
    later = END + timedelta(hours=1)
    _label(store, ids, y.tolist(), later)
    _label(store, other, y.tolist(), later)
    _label(store, failed, y.tolist(), later)
    report = QualityMonitor(store).evaluate("clf", "1", START, END)
    assert report.labelled == 500
    assert report.metrics["roc_auc"] == pytest.approx(metrics.roc_auc_score(y, scores))
    v2 = QualityMonitor(store).evaluate("clf", "2", START, END)
    assert v2.metrics["roc_auc"] == pytest.approx(metrics.roc_auc_score(y, 1 - scores))
