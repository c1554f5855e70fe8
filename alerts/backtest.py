"""Replay a rule over stored history, as it would have run: when it fires, how often.

``backtest`` evaluates the rule at every step of a range in one query (``alerts.series``),
each step seeing only rows ingested by then, and runs the same lifecycle as the live
evaluator over the samples. It reports each firing (from when to when, per label set), the
notifications a person would have got per week and the share of time firing; given known
incidents, the delay to detect each and the ones missed. ``radar`` gives a query rule's
caught-vs-hit table against the labels, in the manner of Stripe Radar's rule backtests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from telemetry import Store
from telemetry.clock import utc

from .evaluate import rule_samples
from .expr import compile_expression
from .lifecycle import AlertState, Transition, advance, is_breach
from .rules import Query, Rule
from .series import Labels, aggregate_columns, group_column

#: Backtests refuse more steps than this (a year of 1-minute steps is 525,600).
MAX_STEPS = 600_000


@dataclass(frozen=True)
class Firing:
    """One alert firing: its labels, when it fired and when it resolved (None: still on)."""

    labels: Labels
    fired_at: datetime
    resolved_at: datetime | None
    peak: float | None


@dataclass(frozen=True)
class Incident:
    """A known incident to score a rule against: a time range (and optionally labels)."""

    start: datetime
    end: datetime
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class BacktestResult:
    """What the rule would have done over ``[start, end)``."""

    rule: str
    start: datetime
    end: datetime
    steps: int
    transitions: dict[Labels, list[Transition]]
    firings: list[Firing]
    detection: list[tuple[Incident, timedelta | None]] = field(default_factory=list)

    @property
    def notifications(self) -> int:
        """Notifications sent: every firing, resolution, no data and error."""
        return sum(t.notifies for ts in self.transitions.values() for t in ts)

    @property
    def pages_per_week(self) -> float:
        """Firings per 7 days of the range."""
        weeks = (self.end - self.start) / timedelta(days=7)
        return len(self.firings) / weeks if weeks else 0.0

    @property
    def time_firing(self) -> timedelta:
        """Total time alerts were firing (summed over label sets)."""
        return sum(((f.resolved_at or self.end) - f.fired_at for f in self.firings),
                   timedelta(0))

    @property
    def missed(self) -> list[Incident]:
        return [incident for incident, delay in self.detection if delay is None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule, "from": self.start.isoformat(), "to": self.end.isoformat(),
            "steps": self.steps, "firings": len(self.firings),
            "notifications": self.notifications,
            "pages_per_week": round(self.pages_per_week, 3),
            "time_firing_s": self.time_firing.total_seconds(),
            "alerts": [{"labels": dict(f.labels), "fired_at": f.fired_at.isoformat(),
                        "resolved_at": f.resolved_at.isoformat() if f.resolved_at else None,
                        "peak": f.peak} for f in self.firings],
            "incidents": [{"start": i.start.isoformat(), "end": i.end.isoformat(),
                           "detected_after_s": None if d is None else d.total_seconds()}
                          for i, d in self.detection],
        }


def steps_of(rule: Rule, start: datetime, end: datetime) -> list[datetime]:
    """The rule's evaluation moments in ``[start, end)``: every ``interval`` from ``start``."""
    if utc(end) <= utc(start):
        raise ValueError(f"the range ends ({end}) at or before it starts ({start})")
    count = -(-(utc(end) - utc(start)) // rule.interval)  # every step before the end
    if count > MAX_STEPS:
        raise ValueError(f"{count} steps of {rule.interval} from {start} to {end}: more than "
                         f"{MAX_STEPS}; shorten the range or lengthen the interval")
    return [utc(start) + i * rule.interval for i in range(count)]


def backtest(store: Store, rule: Rule, start: datetime, end: datetime,
             incidents: list[Incident] | None = None) -> BacktestResult:
    """Replay ``rule`` at its interval over ``[start, end)``."""
    steps = steps_of(rule, start, end)
    samples = rule_samples(store, rule, steps)
    transitions: dict[Labels, list[Transition]] = {}
    firings: list[Firing] = []
    for labels, values in sorted(samples.items()):
        alert = AlertState()
        changes: list[Transition] = []
        opened: tuple[datetime, float | None] | None = None
        for at, value in zip(steps, values, strict=True):
            if alert.state == "inactive" and value is not None and \
                    not is_breach(rule, alert, value):
                continue  # nothing can change: skip the lifecycle's bookkeeping
            alert, change = advance(rule, alert, at, value)
            if opened is not None and value is not None:
                opened = (opened[0], max(opened[1] or value, value))
            if change is None:
                continue
            changes.append(change)
            if change.state == "firing":
                opened = (at, value)
            elif change.previous == "firing" and opened is not None:
                firings.append(Firing(labels, opened[0], at, opened[1]))
                opened = None
        if opened is not None:
            firings.append(Firing(labels, opened[0], None, opened[1]))
        if changes:
            transitions[labels] = changes
    result = BacktestResult(rule.name, utc(start), utc(end), len(steps), transitions,
                            sorted(firings, key=lambda f: (f.fired_at, f.labels)))
    result.detection = [(i, _detected(i, result.firings)) for i in incidents or []]
    return result


def _detected(incident: Incident, firings: list[Firing]) -> timedelta | None:
    """How long after its start an incident was first firing (None: missed)."""
    for firing in firings:
        labels = dict(firing.labels)
        if any(labels.get(k) != v for k, v in incident.labels.items()):
            continue
        until = firing.resolved_at or datetime.max.replace(tzinfo=firing.fired_at.tzinfo)
        if firing.fired_at < incident.end and until > incident.start:
            return max(timedelta(0), firing.fired_at - incident.start)
    return None


@dataclass(frozen=True)
class Radar:
    """A query rule against the labels: the requests it would have hit, and which of them
    were the positives (fraud) it is for."""

    hit: int  # requests the rule would have flagged
    caught: int  # of those, labelled positive
    false_hits: int  # of those, labelled negative
    unlabelled_hits: int
    positives: int  # labelled positive requests in the range
    caught_amount: float  # the chosen feature summed over caught positives
    missed_amount: float  # ... over positives not caught

    @property
    def precision(self) -> float | None:
        judged = self.caught + self.false_hits
        return self.caught / judged if judged else None

    @property
    def recall(self) -> float | None:
        return self.caught / self.positives if self.positives else None


def radar(store: Store, query: Query, start: datetime, end: datetime, *,
          positive: str = "1", amount: str | None = None) -> Radar:
    """Each request of ``query.model`` in ``[start, end)`` is hit when it matches ``where``
    and its group's aggregate over the window ending at it (itself included) breaches, as
    a rule checked at request time would; the labels known now say which were positive."""
    where = compile_expression(query.where)
    params: dict[str, Any] = {**where.params, "model": query.model, "start": utc(start),
                              "end": utc(end), "pos": positive,
                              "window_ms": int(query.window.total_seconds() * 1000),
                              "amount": amount or ""}
    groups = [group_column(name, i, params) for i, name in enumerate(query.group_by)]
    partition = f"PARTITION BY {', '.join(groups)} " if groups else ""
    measure, _ = aggregate_columns(query.aggregate, params)
    function = "avg" if query.aggregate.startswith("avg(") else "sum"
    op = {">": ">", ">=": ">=", "<": "<", "<=": "<="}[query.op]
    row = store.query(
        "SELECT countIf(hit), countIf(hit AND y = 1), countIf(hit AND y = 0), "
        "countIf(hit AND y IS NULL), countIf(y = 1), sumIf(amt, hit AND y = 1), "
        "sumIf(amt, NOT hit AND y = 1) FROM ("
        f"SELECT matched AND agg {op} {{threshold:Float64}} AS hit, y, amt FROM ("
        f"SELECT {where.sql} AS matched, "
        f"{function}(if(matched, {measure}, NULL)) OVER ({partition}ORDER BY "
        "toUnixTimestamp64Milli(event_time) RANGE BETWEEN {window_ms:UInt64} PRECEDING "
        "AND CURRENT ROW) AS agg, "
        "if({amount:String} = '', 0, numeric_features[{amount:String}]) AS amt, request_id "
        "FROM inference_logs FINAL WHERE model = {model:String} "
        "AND event_time >= {start:DateTime64(3, 'UTC')} "
        "AND event_time < {end:DateTime64(3, 'UTC')}) AS r "
        "LEFT JOIN (SELECT request_id, toNullable(toUInt8(argMax(label, ingest_time) = "
        "{pos:String})) AS y FROM labels GROUP BY request_id) AS l USING request_id) "
        "SETTINGS join_use_nulls = 1",
        {**params, "threshold": query.value},
    )[0]
    return Radar(*(int(x) for x in row[:5]), float(row[5]), float(row[6]))


@dataclass
class RuleDiff:
    """Two versions of a rule over the same history: which firings each would have had."""

    before: BacktestResult
    after: BacktestResult
    both: list[tuple[Firing, Firing]] = field(default_factory=list)  # overlapping pairs
    only_before: list[Firing] = field(default_factory=list)  # pages the change removes
    only_after: list[Firing] = field(default_factory=list)  # pages the change adds


def diff(store: Store, before: Rule, after: Rule, start: datetime,
         end: datetime) -> RuleDiff:
    """Backtest both versions and pair their firings that overlap on the same labels."""
    result = RuleDiff(backtest(store, before, start, end), backtest(store, after, start, end))
    unmatched = list(result.after.firings)
    for old in result.before.firings:
        match = next((new for new in unmatched if new.labels == old.labels
                      and _overlap(old, new, result.before.end)), None)
        if match is None:
            result.only_before.append(old)
        else:
            unmatched.remove(match)
            result.both.append((old, match))
    result.only_after = unmatched
    return result


def _overlap(a: Firing, b: Firing, end: datetime) -> bool:
    return a.fired_at < (b.resolved_at or end) and b.fired_at < (a.resolved_at or end)
