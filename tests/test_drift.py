"""Drift with known answers: identical data scores zero, shifts and new categories are flagged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from drift import (
    LABEL,
    PREDICTION,
    DriftMonitor,
    DriftSettings,
    ModelMonitorSettings,
    MonitorSettings,
    ProfileBuilder,
    ProfileSettings,
    ResultWriter,
)
from drift.frames import log_columns
from drift.stats import ks_pvalue
from telemetry import TelemetryWriter

START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
END = START + timedelta(hours=1)
ALL = DriftSettings(method="wasserstein", also=("psi", "jensenshannon", "ks"), min_rows=1)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _frame(n: int, seed: int, shift: float = 0.0, scale: float = 1.0,
           countries=("DE", "FR", "US"), weights=(0.5, 0.3, 0.2)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "x": rng.normal(shift, scale, n),
        "y": rng.exponential(2.0, n),
        "country": rng.choice(list(countries), n, p=list(weights)),
        "score": rng.beta(2, 5, n),
    })


def _load(store, frame, *, model="m", version="1", start=START, ingest_ms=None, ids=None):
    times = np.linspace(_ms(start), _ms(start + timedelta(minutes=59)), len(frame)).astype(int)
    columns = log_columns(frame, model, version, times,
                          ingest_ms if ingest_ms is not None else _ms(start),
                          prediction="score", request_ids=ids)
    store.insert_columns("inference_logs", columns)
    return columns["request_id"]


def _profile(frame, **kwargs):
    return ProfileBuilder(settings=ProfileSettings(**kwargs)).from_frame(
        frame, "m", "1", prediction="score")


def test_identical_data_scores_zero_by_every_method(store):
    frame = _frame(5000, seed=1)
    _load(store, frame)
    report = DriftMonitor(store, ALL).evaluate(_profile(frame), START, END)
    assert report.rows == 5000
    for result in report.columns:
        if result.method in ("ks", "chisquare", "z"):
            assert result.score == pytest.approx(0.0, abs=1e-12), result
            assert result.p_value == pytest.approx(1.0), result
        elif result.kind == "numeric" and result.method in ("psi", "jensenshannon"):
            # PSI and JS use Evidently's equal-width bins, onto which the reference is
            # re-binned from its 1000-cell grid: near zero, not exactly zero.
            limit = 1e-4 if result.method == "psi" else 5e-3
            assert 0 <= result.score < limit, result
        else:
            assert result.score == pytest.approx(0.0, abs=1e-9), result
        assert not result.drifted
    assert report.drift_share == 0.0 and not report.dataset_drifted
    assert {r.column for r in report.columns} == {"x", "y", "country", PREDICTION}


def test_a_fresh_sample_of_the_same_distribution_is_not_flagged(store):
    _load(store, _frame(8000, seed=2))
    report = DriftMonitor(store, ALL).evaluate(_profile(_frame(10000, seed=3)), START, END)
    assert report.drifted_features == 0
    assert report.get("x").score < 0.05  # normed Wasserstein: a few hundredths by chance


def test_a_shifted_mean_is_flagged_and_its_wasserstein_distance_is_the_shift(store):
    _load(store, _frame(8000, seed=4, shift=0.5))
    report = DriftMonitor(store, ALL).evaluate(_profile(_frame(10000, seed=5)), START, END)
    x = report.get("x")
    assert (x.method, x.drifted) == ("wasserstein", True)
    assert x.score == pytest.approx(0.5, abs=0.03)  # W1 of N(0,1) vs N(0.5,1) is 0.5, std 1
    assert report.get("x", "psi").drifted and report.get("x", "ks").drifted
    assert not report.get("y").drifted and not report.get("country").drifted
    assert report.drifted_features == 1 and report.drift_share == pytest.approx(1 / 3)


def test_a_new_category_is_flagged(store):
    _load(store, _frame(3000, seed=6, countries=("DE", "FR", "US", "BR"),
                        weights=(0.4, 0.25, 0.15, 0.2)))
    settings = DriftSettings(method="auto", also=("chisquare", "psi"), min_rows=1)
    report = DriftMonitor(store, settings).evaluate(_profile(_frame(5000, seed=7)), START, END)
    country = report.get("country")
    assert (country.method, country.drifted) == ("jensenshannon", True)  # > 1000 rows: JS
    chi = report.get("country", "chisquare")
    assert chi.drifted and chi.p_value == 0.0 and chi.score == float("inf")
    assert report.get("country", "psi").drifted


def test_with_a_small_reference_auto_uses_ks_and_chi_square_like_evidently(store):
    _load(store, _frame(600, seed=8, shift=0.4))
    reference = _frame(800, seed=9)
    report = DriftMonitor(store, DriftSettings(min_rows=1)).evaluate(
        _profile(reference), START, END)
    x = report.get("x")
    assert x.method == "ks" and x.drifted
    current = _frame(600, seed=8, shift=0.4)
    expected = scipy_stats.ks_2samp(reference.x, current.x)
    assert x.score == pytest.approx(expected.statistic, abs=1e-12)  # an exact profile
    assert x.p_value == pytest.approx(expected.pvalue, rel=1e-9)
    assert report.get("country").method == "chisquare"


def test_ks_on_a_binned_profile_is_within_one_bin_of_scipy(store):
    reference, current = _frame(20000, seed=10), _frame(5000, seed=11, scale=1.2)
    _load(store, current)
    settings = DriftSettings(method="ks", min_rows=1)
    report = DriftMonitor(store, settings).evaluate(_profile(reference, bins=200), START, END)
    expected = scipy_stats.ks_2samp(reference.x, current.x)
    x = report.get("x")
    assert abs(x.score - expected.statistic) <= 1 / 200
    assert x.drifted and expected.pvalue < 0.05
    assert x.p_value == pytest.approx(ks_pvalue(x.score, 20000, 5000))


def test_wasserstein_on_a_binned_profile_agrees_with_scipy(store):
    reference, current = _frame(20000, seed=12), _frame(5000, seed=13, scale=1.5)
    _load(store, current)
    report = DriftMonitor(store, ALL).evaluate(_profile(reference), START, END)
    for name in ("x", "y"):
        expected = (scipy_stats.wasserstein_distance(reference[name], current[name])
                    / reference[name].std(ddof=0))
        assert report.get(name).score == pytest.approx(expected, abs=0.003), name


def test_prediction_and_label_drift(store):
    current = _frame(3000, seed=14)
    current["score"] = np.clip(current["score"] + 0.3, 0, 1)
    ids = _load(store, current)
    rng = np.random.default_rng(15)
    TelemetryWriter(store).write_labels(
        [{"request_id": rid, "label": int(rng.random() < 0.6), "label_time": END}
         for rid in ids], "test")
    reference = _frame(5000, seed=16)
    reference["label"] = (np.random.default_rng(17).random(5000) < 0.2).astype(int)
    profile = ProfileBuilder().from_frame(reference, "m", "1", prediction="score", label="label")
    report = DriftMonitor(store, DriftSettings(min_rows=1)).evaluate(profile, START, END)
    assert report.get(PREDICTION).drifted and report.get(PREDICTION).method == "wasserstein"
    label = report.get(LABEL)
    assert label.drifted and label.method == "jensenshannon"
    assert label.current_count == 3000
    assert report.drifted_features == 0  # the prediction and label are not features


def test_rows_ingested_after_the_moment_do_not_count(store):
    reference = _frame(4000, seed=18)
    _load(store, _frame(1000, seed=19), ingest_ms=_ms(START))
    _load(store, _frame(1000, seed=20, shift=3.0), ingest_ms=_ms(END + timedelta(minutes=30)),
          ids=[f"late-{i}" for i in range(1000)])
    monitor = DriftMonitor(store, DriftSettings(min_rows=1))
    before = monitor.evaluate(_profile(reference), START, END, as_of=END)
    after = monitor.evaluate(_profile(reference), START, END)
    assert before.rows == 1000 and not before.get("x").drifted
    assert after.rows == 2000 and after.get("x").drifted


def test_thresholds_and_methods_can_be_overridden_per_feature_and_per_model(store):
    _load(store, _frame(3000, seed=21, shift=0.3))
    profile = _profile(_frame(5000, seed=22))
    default = DriftMonitor(store, DriftSettings(min_rows=1)).evaluate(profile, START, END)
    assert default.get("x").drifted and default.get("x").threshold == 0.1
    settings = MonitorSettings(
        drift={"min_rows": 1},
        models={"m": ModelMonitorSettings(drift=DriftSettings(
            features={"x": {"threshold": 0.5}, "y": {"method": "psi"},
                      "country": {"enabled": False}}))},
    )
    drift, _, _ = settings.for_model("m")
    assert drift.min_rows == 1  # the model's section is merged over the global one
    report = DriftMonitor(store).evaluate(profile, START, END, settings=drift)
    x = report.get("x")
    assert x.threshold == 0.5 and not x.drifted and x.score == default.get("x").score
    assert report.get("y").method == "psi"
    assert "country" not in {r.column for r in report.columns}


def test_a_window_with_too_few_rows_is_skipped(store):
    _load(store, _frame(50, seed=23))
    report = DriftMonitor(store, DriftSettings(min_rows=100)).evaluate(
        _profile(_frame(500, seed=24)), START, END)
    assert report.skipped and "50 requests" in report.skipped and report.columns == ()


def test_a_feature_missing_from_every_request_is_reported_absent(store):
    _load(store, _frame(2000, seed=25).drop(columns=["y"]))
    report = DriftMonitor(store, DriftSettings(min_rows=1)).evaluate(
        _profile(_frame(4000, seed=26)), START, END)
    assert report.absent == ("y",)
    assert {r.column for r in report.features} == {"x", "country"}
    ResultWriter(store).write_drift(report, END)
    assert store.query("SELECT method, drifted FROM drift_results WHERE feature = 'y'") == [
        ("absent", 1)]
