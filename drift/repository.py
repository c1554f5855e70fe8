"""Reference profiles in the store (table ``reference_profiles``, migration 0002).

A profile is written once, one row per column, and never changed. The profile of a model
version "as of t" is the newest one ingested by t, so that backtests use the reference that
was in force at the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from telemetry import PointInTime, Store
from telemetry.clock import Clock, utc_now
from telemetry.records import utc

from .errors import ProfileNotFoundError
from .profiles import (
    CategoricalProfile,
    ColumnProfile,
    NumericProfile,
    ReferenceProfile,
)

_COLUMNS = (
    "profile_id", "model", "model_version", "created_at", "ingest_time", "source",
    "window_start", "window_end", "rows", "task", "column_name", "role", "kind", "n",
    "missing", "n_distinct", "mean", "std", "min_value", "max_value", "exact", "edges",
    "bin_counts", "bin_sums", "bin_edge_counts", "grid_counts", "categories", "category_counts",
    "other_count",
)


@dataclass(frozen=True)
class ProfileInfo:
    """What a stored profile is, without its columns."""

    profile_id: str
    model: str
    version: str
    created_at: datetime
    ingest_time: datetime
    source: str
    rows: int
    columns: int


class ProfileRepository:
    """Saves and loads reference profiles."""

    def __init__(self, store: Store, *, clock: Clock = utc_now) -> None:
        self._store = store
        self._clock = clock

    def save(self, profile: ReferenceProfile) -> str:
        """Store ``profile``; returns its id."""
        ingest = utc(self._clock())
        rows = [_row(profile, column, ingest) for column in profile.columns()]
        self._store.insert("reference_profiles", rows, _COLUMNS)
        return profile.profile_id

    def latest(
        self, model: str, version: str, *, as_of: datetime | None = None
    ) -> ReferenceProfile:
        """The newest profile of a model version ingested by ``as_of`` (default: now)."""
        found = self.find_latest(model, version, as_of=as_of)
        if found is None:
            when = f" as of {utc(as_of).isoformat()}" if as_of else ""
            raise ProfileNotFoundError(
                f"no reference profile for {model} version {version}{when}: build one with "
                "ProfileBuilder.from_frame (training data) or .from_window and save it")
        return found

    def find_latest(
        self, model: str, version: str, *, as_of: datetime | None = None
    ) -> ReferenceProfile | None:
        """Like ``latest`` but None when there is none."""
        pit = PointInTime(as_of)
        profile_id = self._store.scalar(
            f"SELECT profile_id FROM {pit.source('reference_profiles')} "
            "WHERE model = {m:String} AND model_version = {v:String} "
            "ORDER BY created_at DESC, ingest_time DESC LIMIT 1",
            {**pit.params, "m": model, "v": str(version)},
        )
        return self.get(profile_id) if profile_id else None

    def get(self, profile_id: str) -> ReferenceProfile:
        """A profile by id."""
        rows = self._store.query_dicts(
            f"SELECT {', '.join(_COLUMNS)} FROM reference_profiles "
            "WHERE profile_id = {id:String} ORDER BY column_name",
            {"id": profile_id},
        )
        if not rows:
            raise ProfileNotFoundError(f"no reference profile with id {profile_id!r}")
        first = rows[0]
        features: dict[str, ColumnProfile] = {}
        special: dict[str, ColumnProfile] = {}
        for row in rows:
            column = _column(row)
            if column.role == "feature":
                features[column.name] = column
            else:
                special[column.role] = column
        return ReferenceProfile(
            model=first["model"], version=first["model_version"],
            created_at=utc(first["created_at"]), source=first["source"], rows=first["rows"],
            features=features, prediction=special.get("prediction"), label=special.get("label"),
            task=first["task"], window_start=_maybe_utc(first["window_start"]),
            window_end=_maybe_utc(first["window_end"]), profile_id=first["profile_id"],
        )

    def history(self, model: str | None = None) -> list[ProfileInfo]:
        """Every stored profile (of ``model``, if given), newest first."""
        rows = self._store.query(
            "SELECT profile_id, model, model_version, any(created_at), any(ingest_time), "
            "any(source), any(rows), count() FROM reference_profiles "
            "WHERE {m:String} = '' OR model = {m:String} "
            "GROUP BY profile_id, model, model_version ORDER BY any(created_at) DESC",
            {"m": model or ""},
        )
        return [ProfileInfo(p, m, v, utc(c), utc(i), s, int(r), int(n))
                for p, m, v, c, i, s, r, n in rows]


def _row(profile: ReferenceProfile, column: ColumnProfile, ingest: datetime) -> list[Any]:
    common = [
        profile.profile_id, profile.model, profile.version, utc(profile.created_at), ingest,
        profile.source, _maybe_utc(profile.window_start), _maybe_utc(profile.window_end),
        profile.rows, profile.task, column.name, column.role, column.kind, column.count,
        column.missing, column.distinct,
    ]
    if isinstance(column, NumericProfile):
        return common + [
            column.mean, column.std, column.min, column.max, int(column.exact),
            list(column.edges), list(column.counts), list(column.sums),
            list(column.edge_counts), list(column.grid), [], [], 0,
        ]
    return common + [
        0.0, 0.0, 0.0, 0.0, 0, [], [], [], [], [], list(column.categories), list(column.counts),
        column.other,
    ]


def _column(row: dict[str, Any]) -> ColumnProfile:
    common = dict(name=row["column_name"], role=row["role"], count=int(row["n"]),
                  missing=int(row["missing"]), distinct=int(row["n_distinct"]))
    if row["kind"] == "numeric":
        return NumericProfile(
            **common, mean=row["mean"], std=row["std"], min=row["min_value"],
            max=row["max_value"], exact=bool(row["exact"]), edges=tuple(row["edges"]),
            counts=tuple(int(c) for c in row["bin_counts"]), sums=tuple(row["bin_sums"]),
            edge_counts=tuple(int(c) for c in row["bin_edge_counts"]),
            grid=tuple(int(c) for c in row["grid_counts"]),
        )
    return CategoricalProfile(
        **common, categories=tuple(row["categories"]),
        counts=tuple(int(c) for c in row["category_counts"]), other=int(row["other_count"]),
    )


def _maybe_utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else utc(moment)
