"""Alert rules as data: the ``alerts:`` section of ``watchloop.yaml`` and ``rules/*.yaml``.

Three kinds, each with the lifecycle settings every rule has (``for``, ``keep_firing_for``,
a recovery threshold, what no data and an evaluation error mean, severity, labels,
annotations with a runbook link, an evaluation interval):

* ``threshold``: a comparison on a stored series: a monitor result (latency quantiles,
  error rate, quality metrics, SLO burn rates), a drift score or share, Kafka lag, a GPU
  metric or a collector's health, one series per label set (model version, consumer group,
  GPU, collector);
* ``burn_rate``: an SLO's multiwindow, multi-burn-rate condition (SRE workbook, chapter 5),
  over the burn rates the monitors store;
* ``query``: an aggregate over raw inference logs in a window, per entity taken from the
  features (``count`` of requests with ``amount > 500`` per ``card_id`` in 1 minute), its
  filter written in the small language of ``alerts.expr``.

Shape (YAML)::

    alerts:
      rules_dir: rules            # every *.yaml in it holds a list of rules, or {rules: [...]}
      rules:
        - name: fraud-p99
          threshold: {series: {source: monitor, monitor: latency, metric: latency_p99_ms,
                               model: fraud}, op: ">", value: 50, recovery: 40}
          for: 2m
          keep_firing_for: 5m
          severity: page
          annotations: {summary: "fraud p99 over 50 ms", runbook_url: "https://..."}
        - name: card-velocity
          query: {model: fraud, where: "amount > 500", group_by: [card_id],
                  aggregate: count, window: 1m, op: ">", value: 5}
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drift.settings import Duration, DurationOrZero
from telemetry.problems import raise_at

from .expr import ExpressionError, compile_expression

Op = Literal[">", ">=", "<", "<="]
#: How a rule treats a moment without data (Grafana's noDataState): ``nodata`` is a state of
#: its own that notifies, ``alerting`` fires, ``ok`` resolves, ``keep`` keeps the last state.
NoData = Literal["nodata", "alerting", "ok", "keep"]
ErrorState = Literal["error", "alerting", "keep"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


#: Where a threshold rule's series come from: (table, time column, value column by metric,
#: the columns that tell series apart, the column the ``metric`` selects on).
SOURCES: dict[str, dict[str, Any]] = {
    "monitor": {"table": "monitor_results", "keys": ("model", "model_version"),
                "value": "value", "metric": "metric", "status": True},
    "drift": {"table": "drift_results", "keys": ("model", "model_version"),
              "value": "score", "metric": "feature", "status": True},
    "kafka_lag": {"table": "kafka_lag", "keys": ("consumer_group", "topic", "partition"),
                  "value": None, "metric": None, "status": False},
    "gpu": {"table": "gpu_metrics", "keys": ("host", "gpu"), "value": "value",
            "metric": "metric", "status": False},
    "collector": {"table": "collector_health", "keys": ("collector",), "value": None,
                  "metric": None, "status": False},
}
_COLUMN_METRICS = {
    "kafka_lag": ("lag_seconds", "lag_messages", "status"),
    "collector": ("rows_in", "rows_out", "dead_letters", "duplicates", "store_retries", "lag"),
}


class Series(_Settings):
    """A stored series: its source, its metric and which label sets to watch."""

    source: Literal["monitor", "drift", "kafka_lag", "gpu", "collector"] = "monitor"
    monitor: str | None = None  # monitor_results.monitor: latency, quality, slo
    metric: str = Field(min_length=1)  # the metric (drift: the feature, __dataset__ share)
    model: str = "*"
    version: str = "*"
    labels: dict[str, str] = Field(default_factory=dict)  # matched against the row's labels
    max_age: Duration = timedelta(minutes=10)  # older than this, a series has no data
    # a counter (dead letters, XID errors): its increase per second between two rows, a
    # drop taken as a reset (as Prometheus' rate); the first row has no rate yet
    rate: bool = False

    @model_validator(mode="after")
    def _known_metric(self) -> Series:
        columns = _COLUMN_METRICS.get(self.source)
        if columns is not None and self.metric not in columns:
            raise_at("Series", [(("metric",), f"for source {self.source}, one of "
                                 f"{', '.join(columns)}", self.metric)])
        if self.source == "monitor" and self.monitor is None:
            raise_at("Series", [(("monitor",), "a monitor series needs its monitor: latency, "
                                 "quality or slo", None)])
        return self


class Threshold(_Settings):
    """Fires while the series compares with ``value``; resolves past ``recovery``."""

    series: Series
    op: Op = ">"
    value: float
    recovery: float | None = None  # Datadog's critical_recovery: resolve only past this

    @model_validator(mode="after")
    def _recovery_on_the_safe_side(self) -> Threshold:
        _check_recovery(self.op, self.value, self.recovery)
        return self


class BurnRate(_Settings):
    """An SLO's multiwindow burn: both windows burn faster than ``factor``."""

    slo: str = Field(min_length=1)
    long: Duration
    short: Duration
    factor: float = Field(gt=0)
    model: str = "*"
    version: str = "*"

    @model_validator(mode="after")
    def _short_within_long(self) -> BurnRate:
        if self.short >= self.long:
            raise_at("BurnRate", [(("short",), "must be shorter than long", str(self.short))])
        return self


class Query(_Settings):
    """An aggregate over the raw inference logs of a window, per group."""

    model: str = Field(min_length=1)
    where: str = Field("True", validate_default=True)
    group_by: tuple[str, ...] = ()  # feature names, or version
    aggregate: str = "count"  # count, or sum(x) / avg(x) of a field or numeric feature
    window: Duration = timedelta(minutes=1)
    op: Op = ">"
    value: float
    recovery: float | None = None

    @field_validator("where")
    @classmethod
    def _in_the_language(cls, text: str) -> str:
        try:
            compile_expression(text)
        except ExpressionError as exc:
            raise ValueError(str(exc)) from None
        return text

    @field_validator("aggregate")
    @classmethod
    def _known_aggregate(cls, text: str) -> str:
        if text == "count" or re.fullmatch(r"(sum|avg)\([A-Za-z_][A-Za-z0-9_.-]*\)", text):
            return text
        raise ValueError("count, sum(name) or avg(name) of a field or a numeric feature")

    @model_validator(mode="after")
    def _recovery_on_the_safe_side(self) -> Query:
        _check_recovery(self.op, self.value, self.recovery)
        return self


class Rule(_Settings):
    """One alert rule: what it watches, and how its alerts live."""

    name: str = Field(pattern=_NAME.pattern)
    threshold: Threshold | None = None
    burn_rate: BurnRate | None = None
    query: Query | None = None
    for_: Annotated[DurationOrZero, Field(alias="for")] = timedelta(0)
    keep_firing_for: DurationOrZero = timedelta(0)
    interval: Duration = timedelta(minutes=1)
    no_data: NoData = "nodata"
    error: ErrorState = "error"
    severity: Literal["page", "ticket", "info"] = "page"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)  # summary, runbook_url, ...

    @field_validator("labels")
    @classmethod
    def _label_names(cls, labels: dict[str, str]) -> dict[str, str]:
        for name in labels:
            if not _LABEL.match(name):
                raise ValueError(f"label name {name!r} must match [a-zA-Z_][a-zA-Z0-9_]*")
            if name in ("alertname", "severity"):
                raise ValueError(f"{name} is set by the rule itself (name:, severity:)")
        return labels

    @model_validator(mode="after")
    def _one_kind(self) -> Rule:
        kinds = [k for k in ("threshold", "burn_rate", "query") if getattr(self, k)]
        if len(kinds) != 1:
            raise_at("Rule", [((), "give exactly one of threshold, burn_rate or query "
                               f"(got {', '.join(kinds) or 'none'})", None)])
        return self

    @property
    def kind(self) -> str:
        """threshold, burn_rate or query."""
        return next(k for k in ("threshold", "burn_rate", "query") if getattr(self, k))

    @property
    def condition(self) -> Threshold | Query | None:
        """The comparison of a threshold or query rule (a burn rate compares itself)."""
        return self.threshold or self.query


def _check_recovery(op: str, value: float, recovery: float | None) -> None:
    if recovery is None:
        return
    above = op in (">", ">=")
    if (above and recovery > value) or (not above and recovery < value):
        side = "at or below" if above else "at or above"
        raise_at("Threshold", [(("recovery",), f"must be {side} the value {value:g} it "
                                f"recovers from (op {op})", recovery)])


def breached(op: str, value: float, threshold: float) -> bool:
    """``value op threshold``."""
    return {">": value > threshold, ">=": value >= threshold, "<": value < threshold,
            "<=": value <= threshold}[op]
