"""Red, amber or green for what the console shows, from the same rules that page.

A cell of the on-call grid (a model version's p99, its drift share, its error-budget burn)
is judged by the configured alert rules that watch that series, and by the alerts those rules
have raised:

* **red**: an alert of a ``page`` rule on it is firing, or its value breaches a ``page`` rule;
* **amber**: such an alert is pending, a ``ticket``/``info`` rule's alert fires or its value
  breaches one, or no rule watches it but it is past its SLO's own threshold;
* **green**: rules watch it and none is breached;
* **grey**: no data, or too little to judge (the result says how little);
* **none**: there is data but no rule watches it.

Pure functions over plain values: the pages and the tests call them alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from alerts.rules import Rule, breached
from drift.settings import window_label

Colour = Literal["red", "amber", "green", "grey", "none"]
_RANK: dict[str, int] = {"none": 0, "green": 1, "grey": 2, "amber": 3, "red": 4}
#: Colours as the pages draw them (text badges, table cells and chart lines).
HEX: dict[str, str] = {"red": "#d62728", "amber": "#ff9f1c", "green": "#2ca02c",
                       "grey": "#9e9e9e", "none": "#e0e0e0"}
ICON: dict[str, str] = {"red": "🔴", "amber": "🟠", "green": "🟢", "grey": "⚪", "none": "▫️"}


@dataclass(frozen=True)
class Status:
    """A colour and the reason for it, in words an on-call engineer reads."""

    colour: Colour
    reason: str

    @property
    def icon(self) -> str:
        return ICON[self.colour]


def worst(statuses: Iterable[Status]) -> Status:
    """The most alarming of ``statuses`` (none when there are none)."""
    return max(statuses, key=lambda s: _RANK[s.colour], default=Status("none", "nothing to judge"))


@dataclass(frozen=True)
class Cell:
    """A series the grid shows: what a threshold rule's ``series`` names."""

    source: str  # monitor, drift, kafka_lag, gpu, collector
    metric: str
    monitor: str | None = None


def _covers(pattern: str, value: str) -> bool:
    return pattern == "*" or pattern == value


def watching(rules: Iterable[Rule], cell: Cell, model: str, version: str) -> list[Rule]:
    """The threshold rules whose series is ``cell`` for this model version."""
    found = []
    for rule in rules:
        series = rule.threshold.series if rule.threshold else None
        if (series is not None and series.source == cell.source
                and series.metric == cell.metric
                and (cell.monitor is None or series.monitor == cell.monitor)
                and _covers(series.model, model) and _covers(series.version, version)):
            found.append(rule)
    return found


def _from_alerts(rules: Sequence[Rule], alerts: Iterable[Mapping[str, Any]], model: str,
                 version: str) -> list[Status]:
    names = {r.name for r in rules}
    found = []
    for alert in alerts:
        if alert["rule"] not in names or alert["state"] not in ("firing", "pending"):
            continue
        if alert.get("model") not in ("", model) or alert.get("model_version") not in ("",
                                                                                      version):
            continue
        paging = alert["severity"] == "page"
        if alert["state"] == "firing":
            found.append(Status("red" if paging else "amber",
                                f"{alert['rule']} firing"))
        else:
            found.append(Status("amber", f"{alert['rule']} pending"))
    return found


def judge(rules: Iterable[Rule], cell: Cell, model: str, version: str,
          value: float | None, *, alerts: Iterable[Mapping[str, Any]] = (),
          evidence: str = "ok", unit: str = "") -> Status:
    """The colour of ``value`` of ``cell`` for a model version (see the module docs).

    ``evidence`` is the result's status: ``insufficient_data`` and ``no_data`` are grey.
    ``alerts`` are the alerts now pending or firing (``data.active_alerts``)."""
    rules = watching(rules, cell, model, version)
    raised = _from_alerts(rules, alerts, model, version)
    if evidence != "ok" or value is None:
        why = "too little data to judge" if evidence == "insufficient_data" else "no data"
        return worst([Status("grey", why), *raised])
    breaches = []
    for rule in rules:
        condition = rule.threshold
        if condition is not None and breached(condition.op, value, condition.value):
            colour: Colour = "red" if rule.severity == "page" else "amber"
            breaches.append(Status(colour, f"{value:.4g}{unit} {condition.op} "
                                           f"{condition.value:g}{unit} ({rule.name})"))
    if breaches or raised:
        return worst([*breaches, *raised])
    if not rules:
        return Status("none", "no rule watches it")
    return Status("green", f"within {len(rules)} rule{'s' * (len(rules) > 1)}")


def judge_latency(rules: Iterable[Rule], model: str, version: str, p99_ms: float | None,
                  slo_threshold_ms: float | None, *,
                  alerts: Iterable[Mapping[str, Any]] = (), requests: int = 0) -> Status:
    """p99 latency: its rules, else its latency SLO's threshold (amber past it)."""
    rules = list(rules)
    cell = Cell("monitor", "latency_p99_ms", "latency")
    status = judge(rules, cell, model, version, p99_ms if requests else None, alerts=alerts,
                   unit=" ms")
    if status.colour != "none" or p99_ms is None or slo_threshold_ms is None:
        return status
    if p99_ms > slo_threshold_ms:
        return Status("amber", f"p99 {p99_ms:.0f} ms over the SLO's {slo_threshold_ms:g} ms")
    return Status("green", f"p99 within the SLO's {slo_threshold_ms:g} ms")


def judge_burn(rules: Iterable[Rule], slo: str, model: str, version: str,
               burn_rates: Mapping[str, float | None], *,
               alerts: Iterable[Mapping[str, Any]] = ()) -> Status:
    """An SLO's error-budget burn, by its ``burn_rate`` rules: a rule breaches when both its
    windows burn faster than its factor (``burn_rates`` by window label: 5m, 1h)."""
    mine = [r for r in rules if r.burn_rate is not None and r.burn_rate.slo == slo
            and _covers(r.burn_rate.model, model) and _covers(r.burn_rate.version, version)]
    raised = _from_alerts(mine, alerts, model, version)
    if not any(rate is not None for rate in burn_rates.values()):
        return worst([Status("grey", "no traffic in the burn windows"), *raised])
    breaches = []
    for rule in mine:
        burn = rule.burn_rate
        assert burn is not None
        windows = (window_label(burn.long), window_label(burn.short))
        rates = [burn_rates.get(w) for w in windows]
        if all(r is not None and r > burn.factor for r in rates):
            colour: Colour = "red" if rule.severity == "page" else "amber"
            breaches.append(Status(colour, f"burning {rates[0]:.1f}x over {windows[0]} and "
                                           f"{rates[1]:.1f}x over {windows[1]} "
                                           f"(> {burn.factor:g}x, {rule.name})"))
    if breaches or raised:
        return worst([*breaches, *raised])
    if not mine:
        return Status("none", "no burn-rate rule watches it")
    return Status("green", "burning within every window's factor")
