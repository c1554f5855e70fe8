"""Model quality from delayed labels, joined to predictions by request id, point in time.

For a model version and a window of event times, the requests that succeeded are joined to
their newest label ingested as of the evaluation moment; a label that arrived later does not
count. ClickHouse returns a confusion matrix (a few rows), ROC AUC (``arrayAUC``) and log loss
for classifiers, or the error moments for regressors; Python only divides.

Metrics follow scikit-learn's definitions: precision/recall/F1 of the positive class (or their
macro average over the classes seen), log loss with probabilities clipped to [eps, 1 - eps].
An undefined ratio (precision with no positive prediction, recall with no positive label) is
None, as sklearn's ``zero_division=np.nan`` gives, and a macro average leaves it out; fewer
labels than ``min_labels`` give ``insufficient_data`` with the counts and no metric at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from telemetry import Store

from .evidence import INSUFFICIENT_DATA, NO_DATA, OK, Status, coverage, ratio
from .histograms import Window
from .settings import QualitySettings

_EPS = float(np.finfo(np.float64).eps)
#: The metrics of each task: written as NULL when the result is not ``ok``, so that the
#: newest value of a metric is never one from an older window.
METRICS = {
    "classification": ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"),
    "regression": ("mae", "rmse", "mean_error"),
}


@dataclass(frozen=True)
class QualityReport:
    """Quality metrics of a model version over a window, from the labels known as of then."""

    model: str
    version: str
    window_start: datetime
    window_end: datetime
    task: str
    requests: int
    labelled: int
    metrics: dict[str, float | None] = field(default_factory=dict)
    as_of: datetime | None = None
    skipped: str | None = None
    status: Status = OK
    coverage: float = 0.0

    @property
    def label_coverage(self) -> float | None:
        """The share of the window's predictions that have a label (None without any)."""
        return ratio(self.labelled, self.requests)


class QualityMonitor:
    """Computes accuracy, precision, recall, F1, ROC AUC and log loss (classifiers) or MAE,
    RMSE and mean error (regressors) for a model version's window."""

    def __init__(self, store: Store, settings: QualitySettings | None = None) -> None:
        self._store = store
        self.settings = settings or QualitySettings()

    def evaluate(
        self,
        model: str,
        version: str,
        start: datetime,
        end: datetime,
        *,
        as_of: datetime | None = None,
        settings: QualitySettings | None = None,
    ) -> QualityReport:
        """Quality of the predictions made in [start, end), with labels ingested by ``as_of``
        (default: now)."""
        settings = settings or self.settings
        window = Window(model, str(version), start, end, as_of)
        params = {**window.params(), "pos": settings.positive_label}
        joined = f"SELECT * FROM ({window.labels_sql()}) WHERE status = 'ok'"
        requests, first, labelled, classes, text_labels, class_predictions = self._store.query(
            "SELECT (SELECT count() FROM (" + window.logs_sql() + ") WHERE status = 'ok'), "
            "(SELECT if(count() = 0, NULL, min(event_time)) FROM (" + window.logs_sql() + ")), "
            "count(), uniqExact(label), countIf(label_value IS NULL), "
            f"countIf(prediction_label != '') FROM ({joined})", params)[0]
        task = settings.task
        if task == "auto":
            task = ("classification" if class_predictions or text_labels or classes <= 2
                    else "regression")
        requests, labelled = int(requests), int(labelled)
        covered = coverage(start, end, first)
        # requests without labels (yet) are not "no data": their labels are still to come
        status = (NO_DATA if not requests
                  else INSUFFICIENT_DATA if labelled < settings.min_labels else OK)
        if status != OK:
            return QualityReport(
                model, str(version), start, end, task, requests, labelled, as_of=as_of,
                status=status, coverage=covered,
                skipped=f"{labelled} labelled predictions, fewer than {settings.min_labels}")
        if task == "regression":
            metrics = self._regression(joined, params)
        else:
            metrics = self._classification(joined, params, settings)
        return QualityReport(model, str(version), start, end, task, requests, labelled,
                             metrics, as_of, coverage=covered)

    def _regression(self, joined: str, params: dict[str, Any]) -> dict[str, float | None]:
        n, mae, mse, bias = self._store.query(
            "SELECT count(), avg(abs(e)), avg(e * e), avg(e) FROM ("
            "SELECT assumeNotNull(prediction) - assumeNotNull(label_value) AS e "
            f"FROM ({joined}) WHERE prediction IS NOT NULL AND label_value IS NOT NULL)",
            params)[0]
        if not n:
            return {}
        return {"mae": float(mae), "rmse": math.sqrt(float(mse)), "mean_error": float(bias),
                "scored": float(n)}

    def _classification(
        self, joined: str, params: dict[str, Any], settings: QualitySettings
    ) -> dict[str, float | None]:
        params = {**params, "thr": settings.decision_threshold}
        positive = ("(label = {pos:String} OR (label_value IS NOT NULL "
                    "AND label_value = toFloat64OrNull({pos:String})))")
        if settings.average == "binary":
            actual = f"toString(toUInt8({positive}))"
            predicted = ("toString(toUInt8(if(prediction_label != '', "
                         "prediction_label = {pos:String}, "
                         "assumeNotNull(prediction) >= {thr:Float64})))")
        else:
            actual = "label"
            predicted = "prediction_label"
        usable = "(prediction_label != '' OR prediction IS NOT NULL)"
        cells = self._store.query(
            f"SELECT {actual} AS a, {predicted} AS p, count() FROM ({joined}) "
            f"WHERE {usable} GROUP BY a, p", params)
        metrics = _confusion_metrics(cells, settings.average)
        scored, auc, loss, both = self._store.query(
            "SELECT count(), "
            "arrayAUC(groupArray(assumeNotNull(prediction)), groupArray(y)), "
            "avg(if(y = 1, -log(least(greatest(p, {eps:Float64}), 1 - {eps:Float64})), "
            "-log(least(greatest(1 - p, {eps:Float64}), 1 - {eps:Float64})))), "
            "uniqExact(y) "
            f"FROM (SELECT toUInt8({positive}) AS y, assumeNotNull(prediction) AS p, prediction "
            f"FROM ({joined}) WHERE prediction IS NOT NULL)",
            {**params, "eps": _EPS})[0]
        if scored:
            metrics["scored"] = float(scored)
            metrics["log_loss"] = float(loss)
            if both == 2:  # ROC AUC is undefined with a single class, as sklearn says
                metrics["roc_auc"] = float(auc)
        return metrics


def _confusion_metrics(cells: list[tuple], average: str) -> dict[str, float | None]:
    """Accuracy and precision/recall/F1 from (actual, predicted, count) cells; a ratio with
    a zero denominator is None, and left out of a macro average."""
    total = sum(int(n) for _, _, n in cells)
    if not total:
        return {}
    correct = sum(int(n) for a, p, n in cells if a == p)
    metrics: dict[str, float | None] = {"accuracy": correct / total,
                                        "labelled_predictions": float(total)}
    if average == "binary":
        classes = ["1"]
    else:
        classes = sorted({a for a, _, _ in cells} | {p for _, p, _ in cells})
    precisions, recalls, f1s = [], [], []
    for cls in classes:
        tp = sum(int(n) for a, p, n in cells if a == cls and p == cls)
        predicted = sum(int(n) for _, p, n in cells if p == cls)
        actual = sum(int(n) for a, _, n in cells if a == cls)
        precisions.append(ratio(tp, predicted))
        recalls.append(ratio(tp, actual))
        f1s.append(ratio(2 * tp, predicted + actual))
    metrics["precision"] = _mean_defined(precisions)
    metrics["recall"] = _mean_defined(recalls)
    metrics["f1"] = _mean_defined(f1s)
    return metrics


def _mean_defined(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None
