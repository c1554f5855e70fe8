"""Window statistics computed by ClickHouse: histograms over reference edges, value counts.

For a model version and a time window (read as of a moment, so backtests see what was known
then), one query per kind of statistic returns aggregates for every column at once, as a
``UNION ALL`` of one small ``GROUP BY`` per column. Python receives at most a few thousand
rows of aggregates, never raw rows.

Binning uses ClickHouse's ``roundDown(x, edges)`` (a binary search over a constant array):
bin ``k`` of a column holds its values in ``[e_k, e_k+1)``, the last bin the values at or
above the last edge, and a separate bin the values below the first edge. Each bin returns its
count, its sum and how many values equal its left edge; ``min``/``max`` come from the bins.
Columns are read from the feature maps (``numeric_features['amount']``), from the
prediction, or from the label joined by request id (newest label ingested as of the moment).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from telemetry import PointInTime, Store
from telemetry.records import utc

from .profiles import LABEL, PREDICTION, Kind, Role


@dataclass(frozen=True)
class Window:
    """Which rows: one model version's requests with event times in ``[start, end)``.

    ``as_of`` reads the store as it was at that moment (rows ingested by then); ``None``
    reads it as it is now.
    """

    model: str
    version: str
    start: datetime
    end: datetime
    as_of: datetime | None = None

    def params(self) -> dict[str, Any]:
        """The bound parameters of ``logs_sql`` and ``labels_sql``."""
        return {
            "wl_model": self.model,
            "wl_version": self.version,
            "wl_start": utc(self.start),
            "wl_end": utc(self.end),
            **PointInTime(self.as_of).params,
        }

    def logs_sql(self) -> str:
        """A subquery over the window's inference logs (deduplicated, as of ``as_of``)."""
        source = PointInTime(self.as_of).source("inference_logs")
        return (
            f"SELECT * FROM {source} WHERE model = {{wl_model:String}} "
            "AND model_version = {wl_version:String} "
            "AND event_time >= {wl_start:DateTime64(3, 'UTC')} "
            "AND event_time < {wl_end:DateTime64(3, 'UTC')}"
        )

    def labels_sql(self) -> str:
        """A subquery of (request_id, label, label_value, prediction, prediction_label, status)
        for the window's requests that have a label as of ``as_of`` (the newest one)."""
        pit = PointInTime(self.as_of)
        logs = self.logs_sql()
        return (
            "SELECT r.request_id AS request_id, l.label AS label, l.label_value AS label_value, "
            "r.prediction AS prediction, r.prediction_label AS prediction_label, "
            "r.status AS status "
            f"FROM ({logs}) AS r INNER JOIN ("
            "SELECT request_id, argMax(label, ingest_time) AS label, "
            "argMax(label_value, ingest_time) AS label_value "
            f"FROM {pit.source('labels')} "
            f"WHERE request_id IN (SELECT request_id FROM ({logs})) GROUP BY request_id"
            ") AS l ON r.request_id = l.request_id"
        )


@dataclass(frozen=True)
class ColumnRef:
    """A column of the window: a feature, the prediction or the label, numeric or not."""

    name: str
    role: Role
    kind: Kind

    def expressions(self, param: str) -> tuple[str, str, str]:
        """(value expression, presence condition, 'logs' or 'labels') in SQL."""
        name = f"{{{param}:String}}"
        if self.role == "feature":
            column = "numeric_features" if self.kind == "numeric" else "categorical_features"
            return f"{column}[{name}]", f"mapContains({column}, {name})", "logs"
        if self.role == "prediction":
            if self.kind == "numeric":
                return "assumeNotNull(prediction)", "prediction IS NOT NULL", "logs"
            return "prediction_label", "prediction_label != ''", "logs"
        if self.kind == "numeric":
            return "assumeNotNull(label_value)", "label_value IS NOT NULL", "labels"
        return "label", "1", "labels"


def column_ref(name: str, role: Role, kind: Kind) -> ColumnRef:
    """A ColumnRef, with the reserved names for the prediction and the label."""
    if role == "prediction":
        name = PREDICTION
    elif role == "label":
        name = LABEL
    return ColumnRef(name, role, kind)


@dataclass(frozen=True)
class Histogram:
    """A sample binned over ``m`` sorted edges ``e_0..e_m-1``: ``m + 1`` bins.

    Bin 0 holds the values below ``e_0``; bin ``k + 1`` the values in ``[e_k, e_k+1)``, and
    bin ``m`` the values at or above the last edge. ``edge_counts[k]`` counts the values equal
    to ``e_k``. ``minimum``/``maximum`` are of the sample (NaN when it is empty).
    """

    edges: np.ndarray
    counts: np.ndarray
    sums: np.ndarray
    edge_counts: np.ndarray
    minimum: float
    maximum: float

    @property
    def n(self) -> int:
        """How many values were binned."""
        return int(self.counts.sum())

    @classmethod
    def empty(cls, edges: Sequence[float]) -> Histogram:
        """The histogram of no values."""
        e = np.asarray(edges, dtype=np.float64)
        return cls(e, np.zeros(e.size + 1), np.zeros(e.size + 1), np.zeros(e.size),
                   float("nan"), float("nan"))


@dataclass(frozen=True)
class ValueCounts:
    """The most frequent values of a column, with the total and distinct counts."""

    values: dict[Any, int]
    total: int
    distinct: int

    @property
    def other(self) -> int:
        """How many values are beyond the returned ones."""
        return self.total - sum(self.values.values())


@dataclass(frozen=True)
class ColumnSummary:
    """Count, moments, range, distinct count (up to a cap) and quantiles of a numeric column."""

    count: int
    mean: float
    std: float
    minimum: float
    maximum: float
    distinct_up_to: int
    quantiles: tuple[float, ...]
    tails: tuple[float, ...] = ()


class WindowStatistics:
    """Computes per-column aggregates of a window inside the store."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def histograms(
        self, window: Window, columns: Sequence[tuple[ColumnRef, Sequence[float]]]
    ) -> dict[str, Histogram]:
        """Histograms of numeric columns over their edges (each column's own sorted edges)."""
        if not columns:
            return {}
        parts, params = [], window.params()
        for i, (ref, edges) in enumerate(columns):
            value, present, source = ref.expressions(f"c{i}")
            params[f"c{i}"] = ref.name
            params[f"e{i}"] = [float(e) for e in edges]
            edge = f"{{e{i}:Array(Float64)}}"
            parts.append(
                f"SELECT {i} AS col, if(v < {edge}[1], -inf, roundDown(v, {edge})) AS b, "
                "count() AS n, sum(v) AS s, countIf(v = b) AS eq, min(v) AS lo, max(v) AS hi "
                f"FROM (SELECT {value} AS v FROM ({self._source(window, source)}) "
                f"WHERE {present}) GROUP BY b"
            )
        rows = self._store.query(" UNION ALL ".join(parts), params)
        built = {ref.name: Histogram.empty(edges) for ref, edges in columns}
        by_column: dict[int, list[tuple]] = {}
        for row in rows:
            by_column.setdefault(int(row[0]), []).append(row[1:])
        for i, bins in by_column.items():
            ref, _ = columns[i]
            built[ref.name] = _assemble(built[ref.name].edges, bins)
        return built

    def value_counts(
        self, window: Window, columns: Sequence[ColumnRef], limit: int
    ) -> dict[str, ValueCounts]:
        """The ``limit`` most frequent values of each column (categorical or numeric)."""
        result: dict[str, ValueCounts] = {}
        for kind in ("categorical", "numeric"):
            chosen = [c for c in columns if c.kind == kind]
            if chosen:
                result.update(self._value_counts(window, chosen, limit))
        return result

    def summaries(
        self, window: Window, columns: Sequence[ColumnRef], levels: Sequence[float],
        distinct_cap: int, tail: int = 0,
    ) -> dict[str, ColumnSummary]:
        """Moments, range, distinct count (exact up to ``distinct_cap``), exact quantiles at
        ``levels`` (actual data values) and the ``tail`` smallest and largest values of numeric
        columns, for building a profile."""
        if not columns:
            return {}
        # The levels are numbers this module derives from a validated bin count; ClickHouse
        # needs them as literals (parametric aggregate), so they are formatted, not bound.
        level_sql = ", ".join(repr(float(q)) for q in levels)
        parts, params = [], window.params()
        for i, ref in enumerate(columns):
            value, present, source = ref.expressions(f"c{i}")
            params[f"c{i}"] = ref.name
            parts.append(
                f"SELECT {i} AS col, count(), avg(v), stddevPopStable(v), min(v), max(v), "
                f"length(groupUniqArray({int(distinct_cap) + 1})(v)), "
                f"quantilesExact({level_sql})(v), "
                f"arrayConcat(groupArraySorted({int(tail)})(v), "
                f"arrayMap(x -> -x, groupArraySorted({int(tail)})(-v))) "
                f"FROM (SELECT {value} AS v FROM ({self._source(window, source)}) "
                f"WHERE {present})"
            )
        rows = self._store.query(" UNION ALL ".join(parts), params)
        out = {}
        for col, n, mean, std, lo, hi, distinct, quantiles, tails in rows:
            if n:
                out[columns[int(col)].name] = ColumnSummary(
                    int(n), float(mean), float(std), float(lo), float(hi), int(distinct),
                    tuple(float(q) for q in quantiles), tuple(float(t) for t in tails))
        return out

    def row_count(self, window: Window) -> int:
        """How many requests the window holds."""
        return self.extent(window)[0]

    def extent(self, window: Window) -> tuple[int, datetime | None]:
        """How many requests the window holds, and the event time of its first one."""
        rows, first = self._store.query(
            f"SELECT count(), if(count() = 0, NULL, min(event_time)) FROM ({window.logs_sql()})",
            window.params())[0]
        return int(rows), first

    def _value_counts(
        self, window: Window, columns: Sequence[ColumnRef], limit: int
    ) -> dict[str, ValueCounts]:
        parts, params = [], window.params()
        params["wl_limit"] = int(limit)
        for i, ref in enumerate(columns):
            value, present, source = ref.expressions(f"c{i}")
            params[f"c{i}"] = ref.name
            parts.append(
                f"SELECT * FROM (SELECT {i} AS col, v, count() AS n, "
                "sum(count()) OVER () AS total, count() OVER () AS nd "
                f"FROM (SELECT {value} AS v FROM ({self._source(window, source)}) "
                f"WHERE {present}) GROUP BY v ORDER BY n DESC, v LIMIT {{wl_limit:UInt32}})"
            )
        rows = self._store.query(" UNION ALL ".join(parts), params)
        out = {ref.name: ValueCounts({}, 0, 0) for ref in columns}
        for col, value, n, total, distinct in rows:
            ref = columns[int(col)]
            counts = out[ref.name]
            key = float(value) if ref.kind == "numeric" else str(value)
            out[ref.name] = ValueCounts({**counts.values, key: int(n)}, int(total), int(distinct))
        return out

    @staticmethod
    def _source(window: Window, which: str) -> str:
        return window.logs_sql() if which == "logs" else window.labels_sql()


def _assemble(edges: np.ndarray, bins: list[tuple]) -> Histogram:
    """Place the (left edge, count, sum, equal, min, max) rows of one column into arrays."""
    m = edges.size
    counts, sums, edge_counts = np.zeros(m + 1), np.zeros(m + 1), np.zeros(m)
    minimum, maximum = float("inf"), float("-inf")
    for left, n, s, eq, lo, hi in bins:
        # roundDown returns the edge itself, so the lookup is exact; -inf marks "below e_0".
        k = 0 if left == float("-inf") else int(np.searchsorted(edges, left, side="right"))
        counts[k] += n
        sums[k] += s
        if k:
            edge_counts[k - 1] += eq
        minimum, maximum = min(minimum, lo), max(maximum, hi)
    if not counts.sum():
        minimum = maximum = float("nan")
    return Histogram(edges, counts, sums, edge_counts, minimum, maximum)
