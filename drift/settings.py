"""Settings of the monitors: small pydantic models the shell embeds in ``watchloop.yaml``.

Every model forbids unknown keys, so a typo in the config file is an error naming the key.
Shape (YAML, every key optional)::

    monitors:
      interval: 60s
      profiles: {bins: 200, tail: 32, grid: 1000, exact_limit: 1000, max_categories: 1000}
      drift:
        window: 1h
        method: auto            # auto | psi | jensenshannon | wasserstein | ks | chisquare | z
        also: [psi]             # more methods computed and stored for every column
        thresholds: {psi: 0.2}  # overrides of DEFAULT_THRESHOLDS
        drift_share: 0.5
        min_rows: 100           # fewer requests in the window: insufficient_data, no score
        min_labels: 30          # fewer labels joined: label drift is insufficient_data
        features: {amount: {method: psi, threshold: 0.25}, session_id: {enabled: false}}
        prediction: {}          # same keys as a feature
        label: {}
      quality: {window: 24h, task: auto, positive_label: "1", decision_threshold: 0.5,
                min_labels: 30}         # fewer labels joined: insufficient_data, no metrics
      latency: {window: 5m}
      slos:
        - {name: fraud-latency, model: fraud, kind: latency, objective: 0.99, threshold_ms: 50}
        - {name: fraud-availability, model: fraud, kind: availability, objective: 0.999}
      models:                   # per-model overrides, merged key by key over the above
        fraud: {task: classification, drift: {thresholds: {wasserstein: 0.2}}}
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from telemetry.problems import raise_at, repeated_names

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _parse_duration(value: Any) -> Any:
    """Accept "250ms", "30s", "5m", "1h", "3d", "1w" and bare numbers (seconds)."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return value  # a timedelta, or something pydantic will reject with its own message


#: A positive duration: a timedelta, seconds, or text such as "5m", "1h", "3d".
Duration = Annotated[timedelta, BeforeValidator(_parse_duration), Field(gt=timedelta(0))]
#: The same, where zero means "none" (an alert's ``for``, a group's ``group_wait``).
DurationOrZero = Annotated[timedelta, BeforeValidator(_parse_duration),
                           Field(ge=timedelta(0))]

def window_label(length: timedelta) -> str:
    """A duration as the SRE workbook writes windows: 5m, 1h, 3d."""
    seconds = int(length.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{length.total_seconds():g}s"


Method = Literal["auto", "psi", "jensenshannon", "wasserstein", "ks", "chisquare", "z"]
Task = Literal["auto", "classification", "regression"]

#: Default thresholds, the same as Evidently 0.7's. Distances (psi, jensenshannon,
#: wasserstein) flag drift when the score is at or above the threshold; tests (ks, chisquare,
#: z) flag drift when the p-value is below it (KS: at or below, as Evidently does).
DEFAULT_THRESHOLDS: dict[str, float] = {
    "psi": 0.1,
    "jensenshannon": 0.1,
    "wasserstein": 0.1,
    "ks": 0.05,
    "chisquare": 0.05,
    "z": 0.05,
}


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def merged(self, override: _Settings | None) -> _Settings:
        """This object with every field that ``override`` set explicitly replaced."""
        if override is None:
            return self
        return self.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})


class ProfileSettings(_Settings):
    """How reference profiles are built."""

    bins: int = Field(default=200, ge=2, le=10_000)
    exact_limit: int = Field(default=1000, ge=0, le=100_000)
    grid: int = Field(default=1000, ge=0, le=100_000)
    tail: int = Field(default=32, ge=0, le=10_000)
    max_categories: int = Field(default=1000, ge=1, le=100_000)


class ColumnDriftSettings(_Settings):
    """Per-column overrides: a feature, the prediction or the label."""

    enabled: bool = True
    method: Method | None = None
    threshold: float | None = Field(default=None, ge=0)


class DriftSettings(_Settings):
    """Data, prediction and label drift against the model version's reference profile."""

    enabled: bool = True
    window: Duration = timedelta(hours=1)
    method: Method = "auto"
    also: tuple[Method, ...] = ()
    thresholds: dict[Method, float] = Field(default_factory=dict)
    drift_share: float = Field(default=0.5, gt=0, le=1)
    min_rows: int = Field(default=100, ge=1)
    min_labels: int = Field(default=30, ge=1)
    features: dict[str, ColumnDriftSettings] = Field(default_factory=dict)
    prediction: ColumnDriftSettings = ColumnDriftSettings()
    label: ColumnDriftSettings = ColumnDriftSettings()

    def threshold(self, method: str, column: ColumnDriftSettings | None = None) -> float:
        """The threshold for ``method``: the column's, else this section's, else the default."""
        if column is not None and column.threshold is not None:
            return column.threshold
        return self.thresholds.get(method, DEFAULT_THRESHOLDS[method])  # type: ignore[call-overload]

    def merged(self, override: _Settings | None) -> DriftSettings:
        """Overrides merged key by key; ``thresholds`` and ``features`` merge per entry."""
        if not isinstance(override, DriftSettings):
            return self
        update = {k: getattr(override, k) for k in override.model_fields_set}
        if "thresholds" in update:
            update["thresholds"] = {**self.thresholds, **override.thresholds}
        if "features" in update:
            update["features"] = {**self.features, **override.features}
        return self.model_copy(update=update)


class QualitySettings(_Settings):
    """Model quality from delayed labels joined by request id."""

    enabled: bool = True
    window: Duration = timedelta(hours=24)
    task: Task = "auto"
    positive_label: str = "1"
    decision_threshold: float = Field(default=0.5, ge=0, le=1)
    average: Literal["binary", "macro"] = "binary"
    min_labels: int = Field(default=30, ge=1)


class LatencySettings(_Settings):
    """Latency quantiles, throughput and error rate from the per-minute rollup."""

    enabled: bool = True
    window: Duration = timedelta(minutes=5)


class BurnWindow(_Settings):
    """One multiwindow burn-rate condition: both windows burn faster than ``factor``."""

    long: Duration
    short: Duration
    factor: float = Field(gt=0)
    severity: str = "page"

    @model_validator(mode="after")
    def _short_within_long(self) -> BurnWindow:
        if self.short >= self.long:
            raise_at("BurnWindow", [(("short",), "must be shorter than long "
                                     f"({window_label(self.long)})", window_label(self.short))])
        return self


#: The multiwindow, multi-burn-rate alerts of the Google SRE workbook (chapter 5) for a
#: 30-day budget: 2% of it spent in 1 hour, 5% in 6 hours (page), 10% in 3 days (ticket).
SRE_BURN_WINDOWS: tuple[BurnWindow, ...] = (
    BurnWindow(long=timedelta(hours=1), short=timedelta(minutes=5), factor=14.4, severity="page"),
    BurnWindow(long=timedelta(hours=6), short=timedelta(minutes=30), factor=6, severity="page"),
    BurnWindow(long=timedelta(days=3), short=timedelta(hours=6), factor=1, severity="ticket"),
)


class SLOSettings(_Settings):
    """A service-level objective: "99% of requests under 50 ms", "99.9% succeed"."""

    name: str = Field(min_length=1)
    model: str = "*"
    version: str = "*"
    kind: Literal["latency", "availability"]
    objective: float = Field(gt=0, lt=1)
    threshold_ms: float | None = Field(default=None, gt=0, validate_default=True)
    period: Duration = timedelta(days=30)
    burn_windows: tuple[BurnWindow, ...] = SRE_BURN_WINDOWS

    @field_validator("threshold_ms")
    @classmethod
    def _threshold_for_latency(cls, value: float | None, info: ValidationInfo) -> float | None:
        kind = info.data.get("kind")
        if kind == "latency" and value is None:
            raise ValueError("a latency SLO needs threshold_ms (requests slower than it are bad)")
        if kind == "availability" and value is not None:
            raise ValueError("applies to latency SLOs only")
        return value

    def applies_to(self, model: str, version: str) -> bool:
        """True when this SLO covers the model version ('*' matches any)."""
        return self.model in ("*", model) and self.version in ("*", version)


class ModelMonitorSettings(_Settings):
    """Per-model overrides, merged key by key over the global sections."""

    task: Task | None = None
    drift: DriftSettings | None = None
    quality: QualitySettings | None = None
    latency: LatencySettings | None = None


class MonitorSettings(_Settings):
    """Everything the monitor runner evaluates, and how often."""

    interval: Duration = timedelta(seconds=60)
    profiles: ProfileSettings = ProfileSettings()
    models: dict[str, ModelMonitorSettings] = Field(default_factory=dict)
    drift: DriftSettings = DriftSettings()
    quality: QualitySettings = QualitySettings()
    latency: LatencySettings = LatencySettings()
    slos: tuple[SLOSettings, ...] = ()

    @model_validator(mode="after")
    def _unique_slo_names(self) -> MonitorSettings:
        raise_at("MonitorSettings", repeated_names(
            (("slos", i, "name"), slo.name) for i, slo in enumerate(self.slos)))
        return self

    def for_model(self, model: str) -> tuple[DriftSettings, QualitySettings, LatencySettings]:
        """The drift, quality and latency settings of ``model`` with its overrides applied."""
        override = self.models.get(model)
        if override is None:
            return self.drift, self.quality, self.latency
        drift = self.drift.merged(override.drift)
        quality = self.quality.merged(override.quality)
        if override.task is not None:
            quality = quality.model_copy(update={"task": override.task})
        latency = self.latency.merged(override.latency)
        return drift, quality, latency  # type: ignore[return-value]
