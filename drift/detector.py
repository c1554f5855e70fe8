"""Data, prediction and label drift of a model version's window against its reference.

``DriftMonitor.evaluate`` asks the store for the window's histograms over the reference
edges and its value counts (``histograms.WindowStatistics``), then computes per column the
method that decides drift and any extra methods, and the share of drifted features.

The method ``auto`` picks what Evidently 0.7 picks for the same data: with at most 1,000
reference values, KS (numeric) or chi-square (categorical; a z-test for two values); above
that, normed Wasserstein (numeric) or Jensen-Shannon (categorical); numeric columns with at
most five distinct values are treated like categorical ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from telemetry import Store

from .evidence import INSUFFICIENT_DATA, OK, Status, coverage, status_of
from .histograms import ColumnRef, Histogram, ValueCounts, Window, WindowStatistics
from .profiles import (
    CategoricalProfile,
    ColumnProfile,
    Kind,
    NumericProfile,
    ReferenceProfile,
    Role,
)
from .settings import ColumnDriftSettings, DriftSettings
from .stats import (
    chisquare,
    counts_on_edges,
    jensenshannon,
    ks_pvalue,
    ks_statistic,
    profile_histogram,
    psi,
    sturges_edges,
    value_percents,
    wasserstein_normed,
    z_test,
)

OTHER = "__other__"  # values beyond a reference's top categories
UNSEEN = "__unseen__"  # current values beyond the value-count limit, none of them in the reference
#: Evidently bins numeric columns by value (not by Sturges bins) up to this many distinct
#: reference values, for PSI and Jensen-Shannon.
VALUE_BINNING_MAX_DISTINCT = 20
P_VALUE_METHODS = frozenset({"ks", "chisquare", "z"})
_NUMERIC_ONLY = frozenset({"ks", "wasserstein"})
_VALUE_COUNT_ONLY = frozenset({"chisquare", "z"})


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift by one method.

    ``score`` is the statistic (PSI, distance, KS D, chi-square, z); for the tests, drift is
    decided on ``p_value`` instead. ``primary`` marks the method that decides the column. A
    label column with fewer labels than ``min_labels`` has status ``insufficient_data`` and
    no score.
    """

    column: str
    role: Role
    kind: Kind
    method: str
    score: float | None
    p_value: float | None
    threshold: float
    drifted: bool
    reference_count: int
    current_count: int
    primary: bool = True
    status: Status = OK


@dataclass(frozen=True)
class DriftReport:
    """Drift of a window: per column and method, and the share of drifted features.

    ``status`` is ``no_data`` for an empty window and ``insufficient_data`` below
    ``min_rows`` (``skipped`` then says why, and there are no columns). A feature of the
    reference absent from every request of the window (``absent``) counts as drifted in the
    share: a feature pipeline that stopped sending it is the worst drift there is.
    """

    model: str
    version: str
    window_start: datetime
    window_end: datetime
    profile_id: str
    rows: int
    columns: tuple[ColumnDrift, ...] = ()
    drift_share: float = 0.0
    share_threshold: float = 0.5
    skipped: str | None = None
    as_of: datetime | None = None
    absent: tuple[str, ...] = ()
    status: Status = OK
    coverage: float = 0.0
    absent_features: int = 0

    @property
    def features(self) -> list[ColumnDrift]:
        """The deciding result of every feature present in the window."""
        return [c for c in self.columns if c.primary and c.role == "feature"]

    @property
    def drifted_features(self) -> int:
        """How many features drifted, absent ones included."""
        return sum(c.drifted for c in self.features) + self.absent_features

    @property
    def dataset_drifted(self) -> bool:
        """True when the share of drifted features reaches the share threshold."""
        return (self.status == OK and bool(self.features or self.absent_features)
                and self.drift_share >= self.share_threshold)

    def get(self, column: str, method: str | None = None) -> ColumnDrift:
        """The result for ``column`` by ``method`` (default: its deciding method)."""
        for result in self.columns:
            if result.column == column and (
                result.method == method if method else result.primary
            ):
                return result
        raise KeyError(f"no drift result for column {column!r} method {method!r}")


@dataclass
class _Column:
    """One column under evaluation: its reference and what the window gave."""

    ref: ColumnProfile
    where: ColumnRef
    settings: ColumnDriftSettings
    hist: Histogram | None = None
    counts: ValueCounts | None = None
    value_counts: dict[Any, float] | None = None
    sturges: Histogram | None = None
    methods: list[str] = field(default_factory=list)


class DriftMonitor:
    """Computes drift for a model version's window inside the store."""

    def __init__(
        self, store: Store, settings: DriftSettings | None = None, *, max_values: int = 1000
    ) -> None:
        """``max_values``: how many of a column's most frequent values a window reports."""
        self._stats = WindowStatistics(store)
        self.settings = settings or DriftSettings()
        self._max_values = max_values

    def evaluate(
        self,
        profile: ReferenceProfile,
        start: datetime,
        end: datetime,
        *,
        as_of: datetime | None = None,
        settings: DriftSettings | None = None,
    ) -> DriftReport:
        """Drift of the requests of ``profile``'s model version with event times in
        [start, end), reading the store as of ``as_of`` (default: now)."""
        settings = settings or self.settings
        window = Window(profile.model, profile.version, start, end, as_of)
        rows, first = self._stats.extent(window)
        covered = coverage(start, end, first)
        status = status_of(rows, settings.min_rows)
        if status != OK:
            return DriftReport(
                profile.model, profile.version, start, end, profile.profile_id, rows,
                share_threshold=settings.drift_share, as_of=as_of, status=status,
                coverage=covered,
                skipped=f"{rows} requests in the window, fewer than {settings.min_rows}")
        columns = self._columns(profile, settings)
        self._fetch(window, columns)
        self._fetch_new_values(window, columns)
        unlabelled = [c for c in columns
                      if c.ref.role == "label" and _current_count(c) < settings.min_labels]
        columns = [c for c in columns if c not in unlabelled]
        absent = tuple(c.ref.name for c in columns if _current_count(c) == 0)
        absent_features = sum(c.ref.role == "feature" for c in columns
                              if _current_count(c) == 0)
        columns = [c for c in columns if _current_count(c) > 0]
        for column in columns:
            column.methods = self._methods(column, settings)
        self._fetch_sturges(window, columns)
        results = [r for column in columns for r in self._results(column, settings)]
        results += [_insufficient_labels(c, settings) for c in unlabelled]
        features = [r for r in results if r.primary and r.role == "feature"]
        evaluated = len(features) + absent_features
        drifted = sum(r.drifted for r in features) + absent_features
        share = drifted / evaluated if evaluated else 0.0
        return DriftReport(profile.model, profile.version, start, end, profile.profile_id, rows,
                           tuple(results), share, settings.drift_share, as_of=as_of,
                           absent=absent, coverage=covered, absent_features=absent_features)

    # --- which columns, which data ------------------------------------------------------------

    def _columns(self, profile: ReferenceProfile, settings: DriftSettings) -> list[_Column]:
        chosen = []
        for ref in profile.columns():
            if ref.role == "feature":
                column_settings = settings.features.get(ref.name, ColumnDriftSettings())
            elif ref.role == "prediction":
                column_settings = settings.prediction
            else:
                column_settings = settings.label
            if column_settings.enabled:
                chosen.append(_Column(ref, ColumnRef(ref.name, ref.role, ref.kind),
                                      column_settings))
        return chosen

    def _fetch(self, window: Window, columns: list[_Column]) -> None:
        numeric = [c for c in columns if isinstance(c.ref, NumericProfile)]
        hists = self._stats.histograms(window, [(c.where, c.ref.edges) for c in numeric])
        for column in numeric:
            column.hist = hists[column.ref.name]
        categorical = [c for c in columns if isinstance(c.ref, CategoricalProfile)]
        counts = self._stats.value_counts(window, [c.where for c in categorical],
                                          self._max_values)
        for column in categorical:
            column.counts = counts[column.ref.name]
            column.value_counts = _categorical_counts(column.ref, column.counts)

    def _fetch_new_values(self, window: Window, columns: list[_Column]) -> None:
        """Current value counts of numeric columns binned by value (few distinct reference
        values): read off the histogram, unless the window holds values the reference never
        had, which take one more query."""
        need = []
        for column in columns:
            ref, hist = column.ref, column.hist
            if not isinstance(ref, NumericProfile) or not _binned_by_value(ref) or hist is None:
                continue
            if hist.n == hist.edge_counts.sum():
                column.value_counts = {
                    e: float(c) for e, c in zip(ref.edges, hist.edge_counts, strict=True) if c}
            else:
                need.append(column)
        if not need:
            return
        counts = self._stats.value_counts(window, [c.where for c in need], self._max_values)
        for column in need:
            got = counts[column.ref.name]
            values = {k: float(v) for k, v in got.values.items()}
            if got.other:
                values[UNSEEN] = float(got.other)
            column.value_counts = values

    def _fetch_sturges(self, window: Window, columns: list[_Column]) -> None:
        """Evidently's equal-width bins (Sturges' rule over both samples) for PSI and JS on
        numeric columns with many distinct values: their edges depend on the current range,
        so the window is binned a second time."""
        specs, chosen = [], []
        for column in columns:
            ref, hist = column.ref, column.hist
            if (not isinstance(ref, NumericProfile) or _binned_by_value(ref) or hist is None
                    or not {"psi", "jensenshannon"} & set(column.methods)):
                continue
            edges = sturges_edges(min(ref.min, hist.minimum), max(ref.max, hist.maximum),
                                  ref.count + hist.n)
            specs.append((column.where, edges))
            chosen.append(column)
        if specs:
            found = self._stats.histograms(window, specs)
            for column in chosen:
                column.sturges = found[column.ref.name]

    # --- statistics ----------------------------------------------------------------------------

    def _results(self, column: _Column, settings: DriftSettings) -> list[ColumnDrift]:
        ref = column.ref
        current_n = _current_count(column)
        results = []
        for i, method in enumerate(column.methods):
            primary = i == 0
            score, p_value = _COMPUTE[method](column)
            threshold = settings.threshold(method, column.settings if primary else None)
            if method in P_VALUE_METHODS:
                assert p_value is not None
                drifted = p_value <= threshold if method == "ks" else p_value < threshold
            else:
                drifted = score >= threshold
            results.append(ColumnDrift(ref.name, ref.role, ref.kind, method, float(score),
                                       p_value, threshold, bool(drifted), ref.count, current_n,
                                       primary))
        return results

    def _methods(self, column: _Column, settings: DriftSettings) -> list[str]:
        wanted = column.settings.method or settings.method
        primary = wanted if _applicable(wanted, column) else "auto"
        if primary == "auto":
            primary = _auto_method(column)
        methods = [primary]
        for extra in settings.also:
            method = _auto_method(column) if extra == "auto" else extra
            if method not in methods and _applicable(method, column):
                methods.append(method)
        return methods


def _insufficient_labels(column: _Column, settings: DriftSettings) -> ColumnDrift:
    """Label drift before ``min_labels`` labels arrived: the count, never a score."""
    ref = column.ref
    method = column.settings.method or settings.method
    return ColumnDrift(ref.name, ref.role, ref.kind, method, None, None,
                       settings.threshold(method, column.settings) if method != "auto" else 0.0,
                       False, ref.count, _current_count(column), status=INSUFFICIENT_DATA)


def _current_count(column: _Column) -> int:
    if column.hist is not None:
        return column.hist.n
    return column.counts.total if column.counts is not None else 0


def _binned_by_value(ref: NumericProfile) -> bool:
    return ref.exact and ref.distinct <= VALUE_BINNING_MAX_DISTINCT


def _applicable(method: str, column: _Column) -> bool:
    if method == "auto":
        return True
    if isinstance(column.ref, CategoricalProfile):
        return method not in _NUMERIC_ONLY
    if method in _VALUE_COUNT_ONLY:
        return _binned_by_value(column.ref)
    return True


def _auto_method(column: _Column) -> str:
    """Evidently 0.7's default test for this column (``_get_default_stattest``)."""
    ref = column.ref
    n_values = _union_distinct(column)
    if isinstance(ref, NumericProfile) and n_values > 5:
        return "ks" if ref.count <= 1000 else "wasserstein"
    if ref.count <= 1000:
        return "chisquare" if n_values > 2 else "z"
    return "jensenshannon"


def _union_distinct(column: _Column) -> int:
    """Distinct values of reference and current together (a lower bound when capped)."""
    ref = column.ref
    if isinstance(ref, CategoricalProfile):
        assert column.value_counts is not None
        return len(column.value_counts.keys() | _reference_counts(column).keys())
    if not _binned_by_value(ref):
        return ref.distinct
    assert column.value_counts is not None
    return len(column.value_counts.keys() | set(ref.edges))


def _categorical_counts(ref: CategoricalProfile, counts: ValueCounts) -> dict[Any, float]:
    """Current counts keyed like the reference: a value beyond the reference's top categories
    goes to OTHER when the reference had such values, else it stays a (new) value."""
    known = set(ref.categories)
    out: dict[Any, float] = {}
    for value, n in counts.values.items():
        key = value if value in known or ref.other == 0 else OTHER
        out[key] = out.get(key, 0.0) + n
    if counts.other:
        key = OTHER if ref.other else UNSEEN
        out[key] = out.get(key, 0.0) + counts.other
    return out


def _reference_counts(column: _Column) -> dict[Any, float]:
    ref = column.ref
    if isinstance(ref, CategoricalProfile):
        values: dict[Any, float] = {k: float(v) for k, v in ref.values.items()}
        if ref.other:
            values[OTHER] = float(ref.other)
        return values
    return {k: float(v) for k, v in ref.values.items()}


def _shares(column: _Column) -> tuple[np.ndarray, np.ndarray]:
    """Reference and current shares per bin, binned as Evidently bins for PSI and JS."""
    ref = column.ref
    if isinstance(ref, NumericProfile) and not _binned_by_value(ref):
        assert column.sturges is not None
        edges = column.sturges.edges
        ref_counts = counts_on_edges(ref, edges)
        cur = column.sturges.counts[1:-1].copy()
        cur[-1] += column.sturges.counts[-1]  # numpy's last bin is closed
        return ref_counts / ref.count, cur / max(cur.sum(), 1)
    assert column.value_counts is not None
    _, ref_shares, cur_shares = value_percents(_reference_counts(column), column.value_counts)
    return ref_shares, cur_shares


def _psi(column: _Column) -> tuple[float, None]:
    return psi(*_shares(column)), None


def _jensenshannon(column: _Column) -> tuple[float, None]:
    return jensenshannon(*_shares(column)), None


def _wasserstein(column: _Column) -> tuple[float, None]:
    ref = column.ref
    assert isinstance(ref, NumericProfile) and column.hist is not None
    return wasserstein_normed(profile_histogram(ref), column.hist, ref.std), None


def _ks(column: _Column) -> tuple[float, float]:
    ref = column.ref
    assert isinstance(ref, NumericProfile) and column.hist is not None
    statistic = ks_statistic(profile_histogram(ref), column.hist)
    return statistic, ks_pvalue(statistic, ref.count, column.hist.n)


def _chisquare(column: _Column) -> tuple[float, float]:
    assert column.value_counts is not None
    return chisquare(_reference_counts(column), column.value_counts)


def _z(column: _Column) -> tuple[float, float]:
    assert column.value_counts is not None
    return z_test(_reference_counts(column), column.value_counts)


_COMPUTE: Mapping[str, Callable[[_Column], tuple[float, float | None]]] = {
    "psi": _psi,
    "jensenshannon": _jensenshannon,
    "wasserstein": _wasserstein,
    "ks": _ks,
    "chisquare": _chisquare,
    "z": _z,
}
