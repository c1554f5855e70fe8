"""Agreement with Evidently 0.7: the same scores and the same drifted/not verdicts.

Watchloop computes from a reference profile and window histograms what Evidently computes
from raw rows. Where the two see the same bins the scores are equal to rounding; where the
profile summarises the reference, the tolerances below are what the binning allows:

* categorical columns, and numeric ones with few distinct reference values (at most 1,000
  here, so every small reference), are profiled exactly: every method agrees to 1e-9;
* normed Wasserstein on a binned profile (200 quantile bins, plus the 32 smallest and largest
  values, with their sums) is exact except within bins where the two CDFs cross, which
  sampling noise makes them do between near-identical samples: within 0.002 of Evidently's;
* PSI and Jensen-Shannon on a binned numeric profile: Evidently bins both samples into
  equal-width (Sturges) bins over their joint range; Watchloop bins the window exactly so
  in SQL, but re-bins the reference from its 1000-cell equal-width grid, assuming values
  spread evenly inside a cell: JS within 0.002, PSI within 0.002 or 1% of its value,
  whichever is larger (PSI weighs a share error by the log-ratio, large in the tail bins of a
  drifted sample).

Evidently takes a second or two per report at these sizes, so each test runs one report for
all columns of a scenario.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from drift import DriftMonitor, DriftSettings, ProfileBuilder, ProfileSettings
from drift.frames import log_columns

pytest.importorskip("evidently")

START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
END = START + timedelta(hours=1)
NUMERIC = ["same", "shift", "scale", "skewed", "few"]
CATEGORICAL = ["c_same", "c_shift", "c_new"]
EXACT = 1e-9
TOLERANCE = {"wasserstein": 0.002, "psi": 0.002, "jensenshannon": 0.002}
PSI_RELATIVE = 0.01

# A category the reference never saw gives chi-square a zero expected frequency: Evidently
# hands it to scipy, which divides by zero (the statistic is inf, p = 0, as Watchloop says).
CHI_SQUARE_NEW_CATEGORY = pytest.mark.filterwarnings(
    "ignore:divide by zero encountered in divide:RuntimeWarning")


def _data(n: int, seed: int, drifted: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    shift, scale = (0.25, 1.4) if drifted else (0.0, 1.0)
    return pd.DataFrame({
        "same": rng.normal(0, 1, n),
        "shift": rng.normal(shift, 1, n),
        "scale": rng.normal(0, scale, n),
        "skewed": rng.lognormal(0.0 + shift, 0.8, n),
        "few": rng.integers(0, 4 + int(drifted), n).astype(float),
        "c_same": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]),
        "c_shift": rng.choice(["a", "b", "c"], n,
                              p=[0.3, 0.3, 0.4] if drifted else [0.5, 0.3, 0.2]),
        "c_new": rng.choice(["a", "b", "c", "d"], n,
                            p=[0.4, 0.3, 0.2, 0.1] if drifted else [0.45, 0.35, 0.2, 0.0]),
    })


def _evidently(reference: pd.DataFrame, current: pd.DataFrame, **options) -> dict:
    """Evidently's score and verdict per column, and its share of drifted columns."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    snapshot = Report([DataDriftPreset(**options)], include_tests=True).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    ).dict()
    scores = {m["config"]["column"]: m["value"] for m in snapshot["metrics"]
              if m["config"]["type"] == "evidently:metric_v2:ValueDrift"}
    share = next(m["value"]["share"] for m in snapshot["metrics"]
                 if m["config"]["type"] == "evidently:metric_v2:DriftedColumnsCount")
    verdicts = {t["name"].removeprefix("Value Drift for column "): t["status"] == "FAIL"
                for t in snapshot["tests"] if t["name"].startswith("Value Drift for column")}
    return {"scores": scores, "drifted": verdicts, "share": share}


def _watchloop(store, reference: pd.DataFrame, current: pd.DataFrame, settings: DriftSettings):
    times = np.linspace(START.timestamp() * 1000, (END.timestamp() - 60) * 1000,
                        len(current)).astype(int)
    store.insert_columns("inference_logs", log_columns(
        current, "m", "1", times, int(START.timestamp() * 1000)))
    profile = ProfileBuilder(settings=ProfileSettings(bins=200)).from_frame(reference, "m", "1")
    return DriftMonitor(store, settings).evaluate(profile, START, END)


def _compare(report, expected: dict, *, exact_numeric: bool) -> None:
    for column in NUMERIC + CATEGORICAL:
        ours = report.get(column)
        theirs = expected["scores"][column]
        value = ours.p_value if ours.method in ("ks", "chisquare", "z") else ours.score
        exact = column in CATEGORICAL or column == "few" or exact_numeric
        if exact:
            assert value == pytest.approx(theirs, rel=EXACT, abs=1e-12), (column, ours.method)
        else:
            allowed = TOLERANCE[ours.method]
            if ours.method == "psi":
                allowed = max(allowed, PSI_RELATIVE * theirs)
            assert abs(value - theirs) <= allowed, (column, ours.method, value, theirs)
        assert ours.drifted == expected["drifted"][column], (column, ours.method, value, theirs)
    assert report.drift_share == pytest.approx(expected["share"])


@CHI_SQUARE_NEW_CATEGORY
@pytest.mark.parametrize("drifted", [False, True], ids=["not-drifted", "drifted"])
def test_default_methods_agree_on_a_large_reference(store, drifted):
    # Over 1,000 reference rows Evidently picks normed Wasserstein and Jensen-Shannon.
    reference, current = _data(8000, seed=1, drifted=False), _data(6000, seed=2, drifted=drifted)
    report = _watchloop(store, reference, current, DriftSettings(min_rows=1))
    expected = _evidently(reference, current)
    assert {r.method for r in report.features} == {"wasserstein", "jensenshannon"}
    _compare(report, expected, exact_numeric=False)
    assert report.dataset_drifted == drifted


@CHI_SQUARE_NEW_CATEGORY
@pytest.mark.parametrize("drifted", [False, True], ids=["not-drifted", "drifted"])
def test_default_methods_agree_on_a_small_reference(store, drifted):
    # Up to 1,000 reference rows Evidently picks KS and chi-square (a z-test for two
    # values); the profile of so small a reference is exact, so the p-values are equal.
    reference, current = _data(900, seed=3, drifted=False), _data(700, seed=4, drifted=drifted)
    report = _watchloop(store, reference, current, DriftSettings(min_rows=1))
    expected = _evidently(reference, current)
    assert report.get("shift").method == "ks" and report.get("c_shift").method == "chisquare"
    _compare(report, expected, exact_numeric=True)


@CHI_SQUARE_NEW_CATEGORY
@pytest.mark.parametrize("method", ["psi", "jensenshannon"])
def test_binned_distances_agree_on_both_kinds_of_column(store, method):
    reference, current = _data(8000, seed=5, drifted=False), _data(6000, seed=6, drifted=True)
    report = _watchloop(store, reference, current, DriftSettings(method=method, min_rows=1))
    expected = _evidently(reference, current, method=method)
    assert {r.method for r in report.features} == {method}
    _compare(report, expected, exact_numeric=False)


@CHI_SQUARE_NEW_CATEGORY
def test_ks_and_chi_square_chosen_explicitly_agree(store):
    reference, current = _data(900, seed=7, drifted=False), _data(800, seed=8, drifted=True)
    features = {c: {"method": "ks"} for c in NUMERIC} | {
        c: {"method": "chisquare"} for c in CATEGORICAL}
    report = _watchloop(store, reference, current, DriftSettings(features=features, min_rows=1))
    expected = _evidently(reference, current, num_method="ks", cat_method="chisquare")
    _compare(report, expected, exact_numeric=True)
    assert report.get("c_new").drifted and report.get("c_new").p_value == 0.0
