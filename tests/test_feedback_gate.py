"""The gate on real TorchScript models: both are scored on the same rows; the challenger
passes only when it beats the champion by the configured margins, in the direction the
metric improves, and says why with both numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feedback.gate import evaluate_gate
from feedback.settings import GateSettings
from serving_adapters.reference_models import save_scorer

FEATURES = ("risk",)


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    risk = rng.random(1000)
    labels = (risk + rng.normal(0, 0.25, 1000) > 0.5).astype(int)
    return pd.DataFrame({"risk": risk, "label": [str(v) for v in labels],
                         "label_value": labels.astype(float)})


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, object]:
    directory = tmp_path_factory.mktemp("gate")
    return {  # sigmoid(weight * risk + bias): sharper is better, inverted is worse
        "sharp": save_scorer(directory / "sharp.pt", 1, weight=12.0, bias=-6.0),
        "soft": save_scorer(directory / "soft.pt", 1, weight=2.0, bias=-1.0),
        "noise": save_scorer(directory / "noise.pt", 1, weight=0.0, bias=0.0),
        "inverted": save_scorer(directory / "inverted.pt", 1, weight=-12.0, bias=6.0),
    }


def _gate(rows, models, challenger, champion, **settings):
    return evaluate_gate(rows, models[challenger], FEATURES,
                         models[champion] if champion else None, FEATURES,
                         GateSettings(min_rows=100, **settings))


def test_a_worse_challenger_is_rejected_with_both_numbers(rows, models):
    result = _gate(rows, models, "inverted", "sharp")
    assert not result.passed
    assert result.challenger < 0.2 < 0.8 < result.champion
    assert result.improvement < 0
    assert f"challenger roc_auc {result.challenger:.4f} vs champion {result.champion:.4f}" \
        in result.reason
    assert result.tags()["watchloop.gate.passed"] == "false"
    assert result.tags()["watchloop.gate.champion"] == f"{result.champion:.6g}"


def test_a_challenger_as_good_as_the_champion_is_not_promoted(rows, models):
    # sharp and soft rank the rows the same: equal ROC AUC is no improvement
    result = _gate(rows, models, "soft", "sharp")
    assert result.challenger == pytest.approx(result.champion)
    assert not result.passed


def test_a_better_challenger_passes_unless_the_margin_asks_for_more(rows, models):
    better = _gate(rows, models, "sharp", "noise")
    assert better.passed and better.improvement > 0.3
    assert better.rows == 1000
    gain = better.improvement
    short = _gate(rows, models, "sharp", "noise", min_absolute_improvement=gain + 0.01)
    assert not short.passed and "needs at least" in short.reason
    relative = _gate(rows, models, "sharp", "noise", min_relative_improvement=1.0)
    assert not relative.passed  # 100% of 0.5 is 0.5, more than the gain
    assert _gate(rows, models, "sharp", "noise", min_relative_improvement=0.5).passed


def test_a_metric_where_lower_is_better_is_compared_the_other_way(rows, models):
    result = _gate(rows, models, "sharp", "soft", metric="log_loss")
    assert result.passed
    assert result.challenger < result.champion
    assert result.improvement == pytest.approx(result.champion - result.challenger)
    assert not _gate(rows, models, "soft", "sharp", metric="log_loss").passed


def test_too_few_labelled_rows_is_a_refusal_not_a_pass(rows, models):
    result = _gate(rows.head(50), models, "sharp", "noise")
    assert not result.passed and result.challenger is None
    assert result.reason == ("50 labelled rows the challenger was not trained on, fewer "
                             "than 100")


def test_without_a_champion_only_the_threshold_applies(rows, models):
    assert _gate(rows, models, "soft", None).passed
    below = _gate(rows, models, "noise", None, threshold=0.7)
    assert not below.passed and "does not reach the threshold 0.7" in below.reason
