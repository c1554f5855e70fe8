"""Build reference profiles from training data (a DataFrame) or from a window of the store.

From a frame, numpy computes the profile; from the store, ClickHouse does (exact quantiles,
then the histogram over them), so no raw rows leave the store either way. Both give the same
profile for the same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

from telemetry import Store
from telemetry.clock import Clock, utc_now

from .errors import ProfileError
from .histograms import ColumnRef, ColumnSummary, Window, WindowStatistics, column_ref
from .profiles import (
    LABEL,
    PREDICTION,
    CategoricalProfile,
    ColumnProfile,
    NumericProfile,
    ReferenceProfile,
    Role,
    categorical_profile,
    numeric_profile,
)
from .settings import ProfileSettings

#: A label with more distinct numeric values than this is profiled as numeric when the task
#: is not given (a regression target); otherwise as classes.
LABEL_CLASSES_MAX = 20


class ProfileBuilder:
    """Builds ``ReferenceProfile`` objects; store them with ``ProfileRepository.save``."""

    def __init__(
        self,
        store: Store | None = None,
        settings: ProfileSettings | None = None,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self.settings = settings or ProfileSettings()
        self._clock = clock

    # --- from training data ----------------------------------------------------------------------

    def from_frame(
        self,
        frame: Any,
        model: str,
        version: str,
        *,
        prediction: str | None = None,
        label: str | None = None,
        task: str = "auto",
        features: Sequence[str] | None = None,
    ) -> ReferenceProfile:
        """Profile a pandas DataFrame of training (or validation) data.

        Numeric and boolean columns are numeric features, the others categorical; missing
        values (NaN, None) are counted, not profiled. ``prediction`` and ``label`` name the
        columns holding the model's output and the ground truth, if present.
        """
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            raise ProfileError("from_frame expects a pandas DataFrame")
        if frame.empty:
            raise ProfileError("cannot profile an empty frame")
        special = {c for c in (prediction, label) if c is not None}
        missing = special - set(frame.columns)
        if missing:
            raise ProfileError(f"columns not in the frame: {sorted(missing)}")
        names = list(features) if features is not None else [
            str(c) for c in frame.columns if c not in special]
        profiled = {name: self._frame_column(frame[name], name, "feature") for name in names}
        return ReferenceProfile(
            model=model, version=str(version), created_at=self._clock(), source="training",
            rows=len(frame), features=profiled, task=task,
            prediction=self._frame_column(frame[prediction], PREDICTION, "prediction")
            if prediction else None,
            label=self._frame_label(frame[label], task) if label else None,
        )

    def _frame_column(self, series: Any, name: str, role: Role,
                      kind: str | None = None) -> ColumnProfile:
        import pandas as pd

        values = series.dropna()
        missing = len(series) - len(values)
        numeric = kind == "numeric" or (
            kind is None and (pd.api.types.is_numeric_dtype(series)
                              or pd.api.types.is_bool_dtype(series)))
        if numeric:
            x = values.to_numpy(dtype=np.float64)
            finite = np.isfinite(x)
            return numeric_profile(name, role, x[finite], missing + int((~finite).sum()),
                                   bins=self.settings.bins, exact_limit=self.settings.exact_limit,
                                   grid=self.settings.grid, tail=self.settings.tail)
        return categorical_profile(name, role, values.astype(str).to_numpy(), missing,
                                   max_categories=self.settings.max_categories)

    def _frame_label(self, series: Any, task: str) -> ColumnProfile:
        import pandas as pd

        numeric = pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)
        as_numeric = task == "regression" or (
            task == "auto" and numeric and series.nunique() > LABEL_CLASSES_MAX)
        if as_numeric:
            return self._frame_column(series, LABEL, "label", "numeric")
        values = series.dropna()
        # Labels are stored as text ("1" for 1, True and 1.0); profile classes the same way.
        text = values.map(_label_text)
        profile = self._frame_column(text, LABEL, "label", "categorical")
        assert isinstance(profile, CategoricalProfile)
        return CategoricalProfile(profile.name, "label", profile.count,
                                  len(series) - len(values), profile.distinct,
                                  profile.categories, profile.counts, profile.other)

    # --- from a window of the store --------------------------------------------------------------

    def from_window(
        self,
        model: str,
        version: str,
        start: datetime,
        end: datetime,
        *,
        as_of: datetime | None = None,
        task: str = "auto",
    ) -> ReferenceProfile:
        """Profile the requests (and labels) of a model version in [start, end), inside the
        store: exact quantiles and histograms in SQL."""
        if self._store is None:
            raise ProfileError("from_window needs a store: ProfileBuilder(store, ...)")
        window = Window(model, str(version), start, end, as_of)
        stats = WindowStatistics(self._store)
        rows = stats.row_count(window)
        if rows == 0:
            raise ProfileError(f"no requests of {model} version {version} in the window")
        refs = self._window_columns(window, task)
        numeric = [r for r in refs if r.kind == "numeric"]
        categorical = [r for r in refs if r.kind == "categorical"]
        labelled = self._labelled(window) if any(r.role == "label" for r in refs) else 0
        totals = {r.name: (labelled if r.role == "label" else rows) for r in refs}
        built: dict[str, ColumnProfile] = {}
        built.update(self._window_numeric(stats, window, numeric, totals))
        counts = stats.value_counts(window, categorical, self.settings.max_categories)
        for ref in categorical:
            got = counts[ref.name]
            if got.total:
                built[ref.name] = CategoricalProfile(
                    ref.name, ref.role, got.total, totals[ref.name] - got.total, got.distinct,
                    tuple(got.values), tuple(got.values.values()), got.other)
        features = {r.name: built[r.name] for r in refs
                    if r.role == "feature" and r.name in built}
        special = {r.role: built.get(r.name) for r in refs if r.role != "feature"}
        return ReferenceProfile(
            model=model, version=str(version), created_at=self._clock(), source="window",
            rows=rows, features=features, prediction=special.get("prediction"),
            label=special.get("label"), task=task, window_start=start, window_end=end,
        )

    def _window_numeric(
        self, stats: WindowStatistics, window: Window, refs: list[ColumnRef],
        totals: dict[str, int],
    ) -> dict[str, NumericProfile]:
        levels = np.linspace(0.0, 1.0, self.settings.bins + 1)
        summaries = stats.summaries(window, refs, levels, self.settings.exact_limit,
                                    self.settings.tail)
        exact = [r for r in refs if r.name in summaries
                 and summaries[r.name].distinct_up_to <= self.settings.exact_limit]
        binned = [r for r in refs if r.name in summaries and r not in exact]
        out: dict[str, NumericProfile] = {}
        values = stats.value_counts(window, exact, self.settings.exact_limit + 1)
        for ref in exact:
            counts = values[ref.name].values
            edges = sorted(counts)
            n = [counts[e] for e in edges]
            out[ref.name] = _numeric(ref, summaries[ref.name], totals[ref.name], True, edges, n,
                                     [e * c for e, c in zip(edges, n, strict=True)], n)
        edges_of = {r.name: _quantile_edges(summaries[r.name]) for r in binned}
        hists = stats.histograms(window, [(r, edges_of[r.name]) for r in binned])
        grids = self._window_grids(stats, window, binned, summaries)
        for ref in binned:
            hist = hists[ref.name]
            out[ref.name] = _numeric(
                ref, summaries[ref.name], totals[ref.name], False, edges_of[ref.name],
                [int(c) for c in hist.counts[1:]], hist.sums[1:].tolist(),
                [int(c) for c in hist.edge_counts], grids.get(ref.name, ()))
        return out

    def _window_grids(
        self, stats: WindowStatistics, window: Window, refs: list[ColumnRef],
        summaries: dict[str, ColumnSummary],
    ) -> dict[str, tuple[int, ...]]:
        """Counts over the equal-width grid, binned as ``np.histogram`` bins them."""
        cells = self.settings.grid
        if cells <= 0 or not refs:
            return {}
        edges = {r.name: np.linspace(summaries[r.name].minimum, summaries[r.name].maximum,
                                     cells + 1) for r in refs}
        found = stats.histograms(window, [(r, edges[r.name]) for r in refs])
        out = {}
        for ref in refs:
            counts = found[ref.name].counts[1:].copy()
            counts[-2] += counts[-1]  # the values equal to max: numpy's last cell is closed
            out[ref.name] = tuple(int(c) for c in counts[:-1])
        return out

    def _window_columns(self, window: Window, task: str) -> list[ColumnRef]:
        assert self._store is not None
        logs, params = window.logs_sql(), window.params()
        numeric, categorical, scores, classes = self._store.query(
            "SELECT groupUniqArrayArray(mapKeys(numeric_features)), "
            "groupUniqArrayArray(mapKeys(categorical_features)), "
            "countIf(prediction IS NOT NULL), countIf(prediction_label != '') "
            f"FROM ({logs})", params)[0]
        refs = [ColumnRef(str(n), "feature", "numeric") for n in sorted(numeric)]
        refs += [ColumnRef(str(n), "feature", "categorical") for n in sorted(categorical)]
        if scores:
            refs.append(column_ref("", "prediction", "numeric"))
        elif classes:
            refs.append(column_ref("", "prediction", "categorical"))
        labels, valued, distinct = self._store.query(
            "SELECT count(), countIf(label_value IS NOT NULL), uniqExact(label) "
            f"FROM ({window.labels_sql()})", params)[0]
        if labels:
            as_numeric = task == "regression" or (
                task == "auto" and valued == labels and distinct > LABEL_CLASSES_MAX)
            refs.append(column_ref("", "label", "numeric" if as_numeric else "categorical"))
        return refs

    def _labelled(self, window: Window) -> int:
        assert self._store is not None
        return int(self._store.scalar(f"SELECT count() FROM ({window.labels_sql()})",
                                      window.params()) or 0)


def _quantile_edges(summary: ColumnSummary) -> list[float]:
    points = np.concatenate([[summary.minimum], summary.quantiles, summary.tails,
                             [summary.maximum]])
    return np.unique(points).tolist()


def _numeric(
    ref: ColumnRef, summary: ColumnSummary, total: int, exact: bool, edges: Sequence[float],
    counts: Sequence[int], sums: Sequence[float], edge_counts: Sequence[int],
    grid: Sequence[int] = (),
) -> NumericProfile:
    return NumericProfile(
        name=ref.name, role=ref.role, count=summary.count, missing=max(total - summary.count, 0),
        distinct=summary.distinct_up_to, mean=summary.mean, std=summary.std,
        min=summary.minimum, max=summary.maximum, exact=exact,
        edges=tuple(float(e) for e in edges), counts=tuple(int(c) for c in counts),
        sums=tuple(float(s) for s in sums), edge_counts=tuple(int(c) for c in edge_counts),
        grid=tuple(int(c) for c in grid),
    )


def _label_text(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)
