"""Reference profiles: what a model version's inputs, outputs and labels looked like.

A profile holds, per column, what the drift statistics need and nothing more:

* a numeric column keeps its count, mean, standard deviation, min and max, and a histogram
  over quantile bin edges ``e_0 = min < e_1 < ... < e_m = max``: bin ``k`` holds the values
  in ``[e_k, e_k+1)`` (the last bin holds the values equal to ``max``), with their count,
  their sum and how many equal ``e_k`` exactly. The counts give the ECDF at every edge (both
  limits), so a KS statistic is exact at the edges; the sums make the Wasserstein integral
  exact within every bin where the two CDFs do not cross. When a column has few distinct
  values (``exact``), the edges are every distinct value and both statistics are exact.
  Otherwise the column also keeps counts over a fine equal-width ``grid`` of ``[min, max]``,
  from which the reference is re-binned onto Evidently's equal-width bins for PSI and JS.
* a categorical column keeps the frequencies of its most frequent values and an ``other``
  count for the rest.

Profiles are plain frozen data, serialisable to JSON (``to_dict``/``from_dict``) so that the
same document can be attached to the model version in MLflow.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np

from telemetry.records import utc

from .errors import ProfileError

Role = Literal["feature", "prediction", "label"]
Kind = Literal["numeric", "categorical"]

#: Reserved column names for the prediction and the label in profiles and drift results.
PREDICTION = "__prediction__"
LABEL = "__label__"
#: The feature name of the dataset-level row (share of drifted columns) in drift_results.
DATASET = "__dataset__"


@dataclass(frozen=True)
class NumericProfile:
    """A numeric column: summary statistics and a histogram over quantile edges."""

    name: str
    role: Role
    count: int
    missing: int
    distinct: int
    mean: float
    std: float
    min: float
    max: float
    exact: bool
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    sums: tuple[float, ...]
    edge_counts: tuple[int, ...]
    grid: tuple[int, ...] = ()
    kind: Kind = field(default="numeric", init=False)

    def __post_init__(self) -> None:
        m = len(self.edges)
        if m == 0 or not (len(self.counts) == len(self.sums) == len(self.edge_counts) == m):
            raise ProfileError(f"column {self.name!r}: edges and bin arrays differ in length")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ProfileError(f"column {self.name!r}: bin edges must be strictly increasing")
        if sum(self.counts) != self.count or (self.grid and sum(self.grid) != self.count):
            raise ProfileError(f"column {self.name!r}: bin counts do not add up to the count")

    @property
    def values(self) -> dict[float, int]:
        """Value counts, for an ``exact`` profile (every distinct value is an edge)."""
        if not self.exact:
            raise ProfileError(f"column {self.name!r} is binned, it has no exact value counts")
        return dict(zip(self.edges, self.edge_counts, strict=True))


@dataclass(frozen=True)
class CategoricalProfile:
    """A categorical column: frequencies of its top values and an ``other`` count."""

    name: str
    role: Role
    count: int
    missing: int
    distinct: int
    categories: tuple[str, ...]
    counts: tuple[int, ...]
    other: int
    kind: Kind = field(default="categorical", init=False)

    def __post_init__(self) -> None:
        if len(self.categories) != len(self.counts):
            raise ProfileError(f"column {self.name!r}: categories and counts differ in length")
        if sum(self.counts) + self.other != self.count:
            raise ProfileError(f"column {self.name!r}: category counts do not add up")

    @property
    def values(self) -> dict[str, int]:
        """Counts of the kept categories (values beyond them are in ``other``)."""
        return dict(zip(self.categories, self.counts, strict=True))


ColumnProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class ReferenceProfile:
    """The reference of one model version: its features, prediction and label."""

    model: str
    version: str
    created_at: datetime
    source: Literal["training", "window"]
    rows: int
    features: Mapping[str, ColumnProfile]
    prediction: ColumnProfile | None = None
    label: ColumnProfile | None = None
    task: str = "auto"
    window_start: datetime | None = None
    window_end: datetime | None = None
    profile_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def columns(self) -> list[ColumnProfile]:
        """Every column: features in name order, then the prediction and the label."""
        found = [self.features[name] for name in sorted(self.features)]
        return found + [c for c in (self.prediction, self.label) if c is not None]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready document (the MLflow artifact)."""
        return {
            "format": "watchloop.reference_profile/1",
            "profile_id": self.profile_id,
            "model": self.model,
            "version": self.version,
            "created_at": utc(self.created_at).isoformat(),
            "source": self.source,
            "rows": self.rows,
            "task": self.task,
            "window_start": _iso(self.window_start),
            "window_end": _iso(self.window_end),
            "columns": [_column_dict(c) for c in self.columns()],
        }

    def to_json(self) -> str:
        """The profile as JSON text."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ReferenceProfile:
        """Rebuild a profile from ``to_dict`` output."""
        if doc.get("format") != "watchloop.reference_profile/1":
            raise ProfileError(f"not a Watchloop reference profile: format {doc.get('format')!r}")
        features: dict[str, ColumnProfile] = {}
        prediction = label = None
        for item in doc["columns"]:
            column = column_from_dict(item)
            if column.role == "prediction":
                prediction = column
            elif column.role == "label":
                label = column
            else:
                features[column.name] = column
        return cls(
            model=doc["model"], version=str(doc["version"]),
            created_at=datetime.fromisoformat(doc["created_at"]), source=doc["source"],
            rows=int(doc["rows"]), features=features, prediction=prediction, label=label,
            task=doc.get("task", "auto"),
            window_start=_from_iso(doc.get("window_start")),
            window_end=_from_iso(doc.get("window_end")), profile_id=doc["profile_id"],
        )


def _column_dict(column: ColumnProfile) -> dict[str, Any]:
    out: dict[str, Any] = {"name": column.name, "role": column.role, "kind": column.kind,
                           "count": column.count, "missing": column.missing,
                           "distinct": column.distinct}
    if isinstance(column, NumericProfile):
        out.update(mean=column.mean, std=column.std, min=column.min, max=column.max,
                   exact=column.exact, edges=list(column.edges), counts=list(column.counts),
                   sums=list(column.sums), edge_counts=list(column.edge_counts),
                   grid=list(column.grid))
    else:
        out.update(categories=list(column.categories), counts=list(column.counts),
                   other=column.other)
    return out


def column_from_dict(item: Mapping[str, Any]) -> ColumnProfile:
    """One column of a profile document."""
    common = dict(name=item["name"], role=item["role"], count=int(item["count"]),
                  missing=int(item["missing"]), distinct=int(item["distinct"]))
    if item["kind"] == "numeric":
        return NumericProfile(
            **common, mean=float(item["mean"]), std=float(item["std"]),
            min=float(item["min"]), max=float(item["max"]), exact=bool(item["exact"]),
            edges=tuple(map(float, item["edges"])), counts=tuple(map(int, item["counts"])),
            sums=tuple(map(float, item["sums"])),
            edge_counts=tuple(map(int, item["edge_counts"])),
            grid=tuple(map(int, item.get("grid", ()))),
        )
    if item["kind"] == "categorical":
        return CategoricalProfile(
            **common, categories=tuple(map(str, item["categories"])),
            counts=tuple(map(int, item["counts"])), other=int(item["other"]),
        )
    raise ProfileError(f"column {item['name']!r}: unknown kind {item['kind']!r}")


def numeric_profile(
    name: str, role: Role, values: np.ndarray, missing: int, *, bins: int, exact_limit: int,
    grid: int = 1000, tail: int = 32,
) -> NumericProfile:
    """Profile finite numeric ``values`` over ``bins`` quantile bins and a ``grid`` of
    equal-width cells.

    With at most ``exact_limit`` distinct values, every distinct value becomes an edge and the
    profile is exact (KS and Wasserstein computed from it equal those on the raw values).
    Otherwise the ``tail`` smallest and largest values are edges too: quantile bins are widest
    in the tails, where a current sample's CDF most often crosses the reference's.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ProfileError(f"column {name!r}: no values to profile")
    if not np.isfinite(x).all():
        raise ProfileError(f"column {name!r}: values must be finite (drop NaN and inf first)")
    ordered = np.sort(x)
    distinct_values = np.unique(ordered)
    exact = distinct_values.size <= exact_limit
    if exact:
        edges = distinct_values
    else:
        # Edges are data values (so ties land on edges exactly), picked as ClickHouse's
        # quantileExact picks them, the value at index floor(q * n) of the sorted sample, so
        # that a profile built from the store has the same edges.
        levels = np.linspace(0.0, 1.0, bins + 1)
        index = np.minimum(np.floor(levels * x.size).astype(np.int64), x.size - 1)
        tails = np.concatenate([ordered[:tail], ordered[max(x.size - tail, 0):]])
        edges = np.unique(np.concatenate([ordered[index], tails]))
    index = np.searchsorted(edges, x, side="right") - 1
    m = edges.size
    counts = np.bincount(index, minlength=m)
    sums = np.bincount(index, weights=x, minlength=m)
    edge_counts = np.bincount(index, weights=(x == edges[index]), minlength=m)
    cells = () if exact or grid <= 0 else tuple(
        int(c) for c in np.histogram(x, bins=grid, range=(edges[0], edges[-1]))[0])
    return NumericProfile(
        name=name, role=role, count=int(x.size), missing=int(missing),
        distinct=int(distinct_values.size), mean=float(x.mean()), std=float(x.std()),
        min=float(edges[0]), max=float(edges[-1]), exact=bool(exact),
        edges=tuple(edges.tolist()), counts=tuple(int(c) for c in counts),
        sums=tuple(sums.tolist()), edge_counts=tuple(int(c) for c in edge_counts), grid=cells,
    )


def grid_edges(profile: NumericProfile) -> np.ndarray:
    """The edges of a profile's equal-width grid (``np.histogram``'s, last cell closed)."""
    return np.linspace(profile.min, profile.max, len(profile.grid) + 1)


def categorical_profile(
    name: str, role: Role, values: Any, missing: int, *, max_categories: int
) -> CategoricalProfile:
    """Profile categorical ``values`` (strings), keeping the ``max_categories`` most frequent."""
    keys, counts = np.unique(np.asarray(values, dtype=object).astype(str), return_counts=True)
    if keys.size == 0:
        raise ProfileError(f"column {name!r}: no values to profile")
    order = np.lexsort((keys, -counts))  # most frequent first, ties by value
    kept = order[:max_categories]
    return CategoricalProfile(
        name=name, role=role, count=int(counts.sum()), missing=int(missing),
        distinct=int(keys.size), categories=tuple(str(k) for k in keys[kept]),
        counts=tuple(int(c) for c in counts[kept]), other=int(counts[order[max_categories:]].sum()),
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else utc(moment).isoformat()


def _from_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
