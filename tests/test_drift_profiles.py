"""Reference profiles: built from training data or from the store, saved, read back as of t."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from drift import (
    DriftSettings,
    ProfileBuilder,
    ProfileError,
    ProfileNotFoundError,
    ProfileRepository,
    ProfileSettings,
    ReferenceProfile,
    WindowStatistics,
)
from drift.frames import log_columns
from drift.histograms import ColumnRef, Window
from drift.stats import profile_histogram

START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
END = START + timedelta(hours=1)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _training(n: int = 4000, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "amount": rng.lognormal(3.0, 1.0, n).round(2),
        "age": rng.integers(18, 90, n).astype(float),
        "rooms": rng.integers(1, 5, n).astype(float),
        "country": rng.choice(["DE", "FR", "US", "GB"], n, p=[0.4, 0.3, 0.2, 0.1]),
        "score": rng.random(n),
    })


def _load(store, frame: pd.DataFrame, model="fraud", version="3", start=START, ingest=None):
    n = len(frame)
    times = np.linspace(_ms(start), _ms(start + timedelta(minutes=59)), n).astype(int)
    store.insert_columns("inference_logs", log_columns(
        frame, model, version, times, ingest if ingest is not None else _ms(start),
        prediction="score" if "score" in frame else None))


def test_a_numeric_profile_keeps_quantile_bins_whose_counts_and_sums_add_up():
    frame = _training()
    profile = ProfileBuilder(settings=ProfileSettings(bins=50, tail=8)).from_frame(
        frame, "fraud", "3", prediction="score")
    amount = profile.features["amount"]
    assert not amount.exact
    assert amount.edges[0] == frame.amount.min() and amount.edges[-1] == frame.amount.max()
    assert 45 <= len(amount.edges) <= 51 + 16  # 50 quantile bins and 8 + 8 tail values
    ordered = np.sort(frame.amount.to_numpy())
    assert set(ordered[:8]) | set(ordered[-8:]) <= set(amount.edges)
    assert sum(amount.counts) == amount.count == len(frame)
    assert sum(amount.sums) == pytest.approx(frame.amount.sum())
    assert amount.std == pytest.approx(frame.amount.std(ddof=0))
    # each bin holds about a fiftieth of the values
    assert max(amount.counts) / len(frame) < 0.03
    # few distinct values: every value is an edge and the counts are exact
    rooms = profile.features["rooms"]
    assert rooms.exact and rooms.values == frame.rooms.value_counts().to_dict()
    assert profile.features["country"].values == frame.country.value_counts().to_dict()
    assert profile.prediction is not None and profile.prediction.kind == "numeric"


def test_categories_beyond_the_limit_are_counted_as_other():
    frame = pd.DataFrame({"city": [f"c{i % 30}" for i in range(300)] + ["c0"] * 50})
    profile = ProfileBuilder(settings=ProfileSettings(max_categories=10)).from_frame(
        frame, "m", "1")
    city = profile.features["city"]
    assert len(city.categories) == 10 and city.categories[0] == "c0"
    assert city.counts[0] == 60
    assert city.other == 350 - sum(city.counts)
    assert city.distinct == 30


def test_labels_are_profiled_as_classes_written_like_stored_labels():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [1, 0, 1, True]})
    profile = ProfileBuilder().from_frame(frame, "m", "1", label="y")
    assert profile.label is not None and profile.label.kind == "categorical"
    assert profile.label.values == {"1": 3, "0": 1}
    regression = ProfileBuilder().from_frame(frame, "m", "1", label="x", task="regression")
    assert regression.label is not None and regression.label.kind == "numeric"


def test_missing_and_non_finite_values_are_counted_not_profiled():
    frame = pd.DataFrame({"x": [1.0, np.nan, 3.0, np.inf, 5.0], "c": ["a", None, "b", "a", "a"]})
    profile = ProfileBuilder().from_frame(frame, "m", "1")
    assert (profile.features["x"].count, profile.features["x"].missing) == (3, 2)
    assert (profile.features["c"].count, profile.features["c"].missing) == (4, 1)
    with pytest.raises(ProfileError, match="empty"):
        ProfileBuilder().from_frame(frame.iloc[:0], "m", "1")


def test_a_profile_survives_the_store_and_json(store):
    profile = ProfileBuilder().from_frame(_training(), "fraud", "3", prediction="score")
    repo = ProfileRepository(store)
    repo.save(profile)
    assert repo.latest("fraud", "3").to_dict() == profile.to_dict()
    assert ReferenceProfile.from_dict(profile.to_dict()).to_dict() == profile.to_dict()
    [info] = repo.history("fraud")
    assert (info.version, info.source, info.rows, info.columns) == ("3", "training", 4000, 5)


def test_the_profile_as_of_t_is_the_newest_ingested_by_t(store):
    t1, t2 = START, START + timedelta(minutes=30)
    old = ProfileBuilder(clock=lambda: t1).from_frame(_training(seed=1), "fraud", "3")
    new = ProfileBuilder(clock=lambda: t2).from_frame(_training(seed=2), "fraud", "3")
    ProfileRepository(store, clock=lambda: t1).save(old)
    ProfileRepository(store, clock=lambda: t2).save(new)
    repo = ProfileRepository(store)
    assert repo.latest("fraud", "3").profile_id == new.profile_id
    assert repo.latest("fraud", "3", as_of=t1 + timedelta(minutes=1)).profile_id == old.profile_id
    with pytest.raises(ProfileNotFoundError, match="fraud version 3 as of"):
        repo.latest("fraud", "3", as_of=t1 - timedelta(minutes=1))
    with pytest.raises(ProfileNotFoundError):
        repo.latest("fraud", "4")


def test_a_profile_built_in_the_store_equals_one_built_from_the_same_rows(store):
    frame = _training(3000)
    _load(store, frame)
    settings = ProfileSettings(bins=40)
    from_store = ProfileBuilder(store, settings).from_window("fraud", "3", START, END)
    from_frame = ProfileBuilder(settings=settings).from_frame(frame, "fraud", "3",
                                                              prediction="score")
    assert from_store.rows == 3000 and from_store.source == "window"
    assert sorted(from_store.features) == sorted(from_frame.features)
    for name, expected in from_frame.features.items():
        got = from_store.features[name]
        if expected.kind == "numeric":
            assert got.edges == expected.edges, name
            assert got.counts == expected.counts, name
            assert got.edge_counts == expected.edge_counts, name
            assert got.sums == pytest.approx(expected.sums), name
            assert got.std == pytest.approx(expected.std), name
        else:
            assert got.values == expected.values
    assert from_store.prediction.counts == from_frame.prediction.counts


def test_window_histograms_bin_exactly_as_the_profile_does(store):
    # The same rows, binned by ClickHouse over the profile's edges, give the profile's bins:
    # this is what makes "identical data" score exactly zero.
    frame = _training(2000)
    _load(store, frame)
    profile = ProfileBuilder(settings=ProfileSettings(bins=64)).from_frame(frame, "fraud", "3")
    stats = WindowStatistics(store)
    columns = [(ColumnRef(n, "feature", "numeric"), profile.features[n].edges)
               for n in ("amount", "age", "rooms")]
    found = stats.histograms(Window("fraud", "3", START, END), columns)
    for name in ("amount", "age", "rooms"):
        expected = profile_histogram(profile.features[name])
        assert np.array_equal(found[name].counts, expected.counts), name
        assert np.array_equal(found[name].edge_counts, expected.edge_counts), name
        assert np.allclose(found[name].sums, expected.sums), name
        assert found[name].minimum == frame[name].min()


def test_drift_settings_resolve_thresholds_per_feature_then_section_then_default():
    settings = DriftSettings(thresholds={"psi": 0.2}, features={"a": {"threshold": 0.3}})
    assert settings.threshold("psi") == 0.2
    assert settings.threshold("psi", settings.features["a"]) == 0.3
    assert settings.threshold("wasserstein") == 0.1
    assert settings.threshold("ks") == 0.05
