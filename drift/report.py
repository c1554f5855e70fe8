"""An on-demand Evidently HTML report for a model version and window.

For the scientist who wants the full picture rather than the monitors' numbers. Evidently
works on raw rows, so this is the one place that reads rows out of the store: a deterministic
sample of at most ``max_rows`` requests (by a hash of the request id), never on a schedule.
The reference is, in order of preference: a DataFrame the caller passes (the training data),
a sample of the window the profile was built from, or a sample drawn from the profile itself
(values spread evenly inside each quantile bin; categories in their stored proportions).

Evidently is an optional dependency: ``pip install watchloop[drift]``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from telemetry import Store
from telemetry.extras import require

from .errors import ReportError
from .histograms import Window
from .profiles import CategoricalProfile, NumericProfile, ReferenceProfile

PREDICTION_COLUMN = "prediction"


class EvidentlyReport:
    """Builds Evidently 0.7 data-drift and data-summary reports from the store."""

    def __init__(self, store: Store, *, max_rows: int = 50_000, seed: int = 0) -> None:
        self._store = store
        self.max_rows = max_rows
        self._seed = seed

    def html(
        self,
        profile: ReferenceProfile,
        start: datetime,
        end: datetime,
        *,
        reference: Any = None,
        as_of: datetime | None = None,
    ) -> str:
        """A standalone HTML report of the window [start, end) against the reference."""
        current = self.sample(Window(profile.model, profile.version, start, end, as_of))
        if current.empty:
            raise ReportError(f"no requests of {profile.model} version {profile.version} in "
                              "the window")
        if reference is None:
            reference = self.reference_frame(profile)
        return self._render(profile, reference, current)

    def sample(self, window: Window) -> Any:
        """At most ``max_rows`` requests of the window as a DataFrame (one column per feature,
        plus ``prediction``)."""
        import pandas as pd

        rows = self._store.query(
            "SELECT numeric_features, categorical_features, prediction, prediction_label "
            f"FROM ({window.logs_sql()}) ORDER BY cityHash64(request_id) "
            "LIMIT {wl_rows:UInt32}",
            {**window.params(), "wl_rows": self.max_rows},
        )
        records = []
        for numeric, categorical, score, label in rows:
            record: dict[str, Any] = {**numeric, **categorical}
            record[PREDICTION_COLUMN] = score if score is not None else (label or None)
            records.append(record)
        return pd.DataFrame.from_records(records)

    def reference_frame(self, profile: ReferenceProfile) -> Any:
        """The reference rows: a sample of the profile's window, or one drawn from it."""
        if profile.source == "window" and profile.window_start and profile.window_end:
            frame = self.sample(Window(profile.model, profile.version, profile.window_start,
                                       profile.window_end))
            if not frame.empty:
                return frame
        return synthesize(profile, min(profile.rows, self.max_rows), seed=self._seed)

    def _render(self, profile: ReferenceProfile, reference: Any, current: Any) -> str:
        evidently = require("evidently", "Evidently reports")
        presets = require("evidently.presets", "Evidently reports")
        DataDefinition, Dataset, Report = (  # noqa: N806
            evidently.DataDefinition, evidently.Dataset, evidently.Report)
        DataDriftPreset, DataSummaryPreset = (  # noqa: N806
            presets.DataDriftPreset, presets.DataSummaryPreset)
        columns = [c for c in current.columns if c in set(reference.columns)]
        numeric = [c for c in columns if _is_numeric(profile, c, current[c])]
        categorical = [c for c in columns if c not in numeric]
        definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
        snapshot = Report([DataDriftPreset(), DataSummaryPreset()]).run(
            current_data=Dataset.from_pandas(current[columns], data_definition=definition),
            reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
        )
        return snapshot.get_html_str(as_iframe=False)


def synthesize(profile: ReferenceProfile, rows: int, *, seed: int = 0) -> Any:
    """A DataFrame of ``rows`` rows drawn from a profile's histograms and frequencies."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for column in profile.columns():
        if column.role == "label":
            continue
        name = PREDICTION_COLUMN if column.role == "prediction" else column.name
        if isinstance(column, NumericProfile):
            data[name] = _draw_numeric(column, rows, rng)
        else:
            data[name] = _draw_categorical(column, rows, rng)
    return pd.DataFrame(data)


def _draw_numeric(column: NumericProfile, rows: int, rng: np.random.Generator) -> np.ndarray:
    edges = np.asarray(column.edges)
    counts = np.asarray(column.counts, dtype=np.float64)
    bins = rng.choice(edges.size, size=rows, p=counts / counts.sum())
    if column.exact:
        return edges[bins]
    upper = np.append(edges[1:], edges[-1])
    return edges[bins] + rng.random(rows) * (upper[bins] - edges[bins])


def _draw_categorical(column: CategoricalProfile, rows: int,
                      rng: np.random.Generator) -> np.ndarray:
    values = list(column.categories) + (["__other__"] if column.other else [])
    counts = np.asarray(list(column.counts) + ([column.other] if column.other else []),
                        dtype=np.float64)
    return np.asarray(values, dtype=object)[rng.choice(len(values), size=rows,
                                                       p=counts / counts.sum())]


def _is_numeric(profile: ReferenceProfile, name: str, values: Any) -> bool:
    import pandas as pd

    column = profile.prediction if name == PREDICTION_COLUMN else profile.features.get(name)
    if column is not None:
        return isinstance(column, NumericProfile)
    return bool(pd.api.types.is_numeric_dtype(values))
