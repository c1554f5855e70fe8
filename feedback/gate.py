"""The gate: is the challenger better than the champion on rows neither was trained on?

Both TorchScript models score the same rows: the newest labelled window the challenger was
not trained on (from its training cut-off to now, labels as known now). The challenger
passes when its metric beats the champion's by at least ``min_absolute_improvement`` and
``min_relative_improvement`` (of the champion's value), in the direction the metric improves
(MLflow's ``MetricThreshold``), and reaches ``threshold`` if one is set. Without a champion
only the threshold applies. Too few labelled rows is a refusal, never a pass. Serving latency
is judged next, by the serving adapter's warm-up, before the version takes traffic.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from telemetry.extras import require

from .settings import GateSettings

__all__ = ["GateResult", "evaluate_gate", "metric_value", "score"]


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict, with both numbers and the rows they stand on."""

    passed: bool
    metric: str
    challenger: float | None
    champion: float | None
    rows: int
    reason: str
    greater_is_better: bool = True

    @property
    def improvement(self) -> float | None:
        """How much better the challenger is (positive: better), in the metric's units."""
        if self.challenger is None or self.champion is None:
            return None
        sign = 1 if self.greater_is_better else -1
        return sign * (self.challenger - self.champion)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "improvement": self.improvement}

    def tags(self) -> dict[str, str]:
        """The result as MLflow version tags."""
        return {"watchloop.gate.passed": str(self.passed).lower(),
                "watchloop.gate.metric": self.metric,
                "watchloop.gate.challenger": _text(self.challenger),
                "watchloop.gate.champion": _text(self.champion),
                "watchloop.gate.rows": str(self.rows),
                "watchloop.gate.reason": self.reason}


def score(model_file: Path, data: Any, features: tuple[str, ...]) -> np.ndarray:
    """The TorchScript model's scores for the rows of ``data`` (a DataFrame)."""
    torch = require("torch", "the gate")
    missing = [f for f in features if f not in data.columns]
    if missing:
        raise ValueError(f"the evaluation rows lack the features {missing}")
    module = torch.jit.load(str(model_file))
    module.eval()
    x = torch.tensor(data[list(features)].fillna(0.0).to_numpy(dtype=np.float32))
    with torch.no_grad():
        return module(x).reshape(-1).numpy().astype(np.float64)


def metric_value(metric: str, data: Any, scores: np.ndarray, settings: GateSettings
                 ) -> float | None:
    """``metric`` of the scores against the rows' labels (None when undefined)."""
    from sklearn import metrics as m

    if metric in ("mae", "rmse"):
        truth = data["label_value"].astype(float).to_numpy()
        error = scores - truth
        return float(np.mean(np.abs(error)) if metric == "mae" else np.sqrt(np.mean(error ** 2)))
    truth = np.asarray([str(v) in (settings.positive_label, f"{settings.positive_label}.0")
                        for v in data["label"]], dtype=int)
    if metric == "roc_auc":
        return float(m.roc_auc_score(truth, scores)) if len(set(truth)) == 2 else None
    if metric == "log_loss":
        return float(m.log_loss(truth, np.clip(scores, 1e-7, 1 - 1e-7), labels=[0, 1]))
    predicted = (scores >= settings.decision_threshold).astype(int)
    if metric == "accuracy":
        return float(m.accuracy_score(truth, predicted))
    function = {"f1": m.f1_score, "precision": m.precision_score, "recall": m.recall_score}
    return float(function[metric](truth, predicted, zero_division=0))


def evaluate_gate(data: Any, challenger_file: Path, challenger_features: tuple[str, ...],
                  champion_file: Path | None, champion_features: tuple[str, ...],
                  settings: GateSettings) -> GateResult:
    """Judge the challenger against the champion (None: there is none) on ``data``."""
    metric, better = settings.metric, settings.greater_is_better
    rows = len(data)
    if rows < settings.min_rows:
        return GateResult(False, metric, None, None, rows,
                          f"{rows} labelled rows the challenger was not trained on, fewer "
                          f"than {settings.min_rows}", better)
    challenger = metric_value(metric, data, score(challenger_file, data, challenger_features),
                              settings)
    champion = (metric_value(metric, data, score(champion_file, data, champion_features),
                             settings) if champion_file is not None else None)
    result = GateResult(False, metric, challenger, champion, rows, "", better)
    if challenger is None or not math.isfinite(challenger):
        return _with(result, f"{metric} of the challenger is undefined on these rows")
    if settings.threshold is not None:
        reached = challenger >= settings.threshold if better else challenger <= settings.threshold
        if not reached:
            return _with(result, f"challenger {metric} {challenger:.4f} does not reach the "
                                 f"threshold {settings.threshold:g}")
    if champion is None:
        return _with(result, "no champion to beat", passed=True)
    gain = result.improvement or 0.0
    needed = max(settings.min_absolute_improvement,
                 settings.min_relative_improvement * abs(champion))
    if gain <= 0 or gain < needed:  # not better, or not by enough
        return _with(result, f"challenger {metric} {challenger:.4f} vs champion "
                             f"{champion:.4f}: improvement {gain:+.4f}, needs at least "
                             f"{needed:+.4f}")
    return _with(result, f"challenger {metric} {challenger:.4f} vs champion {champion:.4f} "
                         f"(improvement {gain:+.4f})", passed=True)


def _with(result: GateResult, reason: str, *, passed: bool = False) -> GateResult:
    return GateResult(passed, result.metric, result.challenger, result.champion, result.rows,
                      reason, result.greater_is_better)


def _text(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"
