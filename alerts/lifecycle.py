"""The life of one alert: inactive → pending → firing → resolved, plus no data and error.

``advance`` is a pure function of the rule, the alert's state and one evaluation (a value,
no data, or an error) at a moment; the live evaluator and the backtest both call it, so a
backtest fires exactly when the live rule would have.

* A breach starts ``pending``; it fires once it has lasted ``for`` (at once when ``for`` is
  0), as Prometheus does.
* While firing, the rule stays breached until the value passes the ``recovery`` threshold
  (Datadog's ``critical_recovery``), and then keeps firing for ``keep_firing_for`` from the
  first evaluation that found it clear (as Prometheus counts), so a flapping signal pages
  once.
* No data and errors follow the rule's ``no_data`` and ``error`` settings (Grafana's
  ``noDataState`` / ``execErrState``): a state of their own, firing, ok, or keep the last.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from .rules import Rule, breached

State = Literal["inactive", "pending", "firing", "nodata", "error"]
NO_DATA = "nodata"
ERROR = "error"
#: The transitions that notify: an alert that fires, resolves, or loses its data.
NOTIFYING = frozenset({"firing", "resolved", "nodata", "error"})


@dataclass(frozen=True)
class AlertState:
    """Where one alert (a rule and a label set) stands."""

    state: State = "inactive"
    since: datetime | None = None  # when it entered this state
    breach_since: datetime | None = None  # when the current breach began
    cleared_since: datetime | None = None  # while firing: the first evaluation found clear
    value: float | None = None


@dataclass(frozen=True)
class Transition:
    """A change of state, with the value that caused it."""

    at: datetime
    previous: State
    state: str  # a State, or "resolved" (firing → inactive)
    value: float | None

    @property
    def notifies(self) -> bool:
        return self.state in NOTIFYING


def advance(rule: Rule, alert: AlertState, at: datetime,
            observed: float | str | None) -> tuple[AlertState, Transition | None]:
    """The alert after an evaluation at ``at`` of ``observed``: a value, ``None`` or
    ``NO_DATA`` for no data, ``ERROR`` for a failed evaluation."""
    if observed is None or observed == NO_DATA:
        return _special(rule, alert, at, rule.no_data, "nodata")
    if observed == ERROR:
        return _special(rule, alert, at, rule.error, "error")
    assert isinstance(observed, float | int)
    return _evaluate(rule, alert, at, float(observed), _is_breach(rule, alert, float(observed)))


def is_breach(rule: Rule, alert: AlertState, value: float) -> bool:
    """Whether ``value`` breaches the rule for an alert in ``alert``'s state."""
    return _is_breach(rule, alert, value)


def _is_breach(rule: Rule, alert: AlertState, value: float) -> bool:
    condition = rule.condition
    if condition is None:  # a burn rate: the lower of the two windows against the factor
        assert rule.burn_rate is not None
        return value > rule.burn_rate.factor
    limit = condition.value
    if alert.state == "firing" and condition.recovery is not None:
        limit = condition.recovery
    return breached(condition.op, value, limit)


def _special(rule: Rule, alert: AlertState, at: datetime, setting: str,
             state: State) -> tuple[AlertState, Transition | None]:
    if setting == "keep":
        return alert, None
    if setting == "alerting":
        return _evaluate(rule, alert, at, None, True)
    if setting == "ok":
        return _evaluate(rule, alert, at, None, False, ignore_keep=True)
    if alert.state == state:
        return alert, None
    return _move(alert, at, state, None)


def _evaluate(rule: Rule, alert: AlertState, at: datetime, value: float | None,
              breach: bool, *, ignore_keep: bool = False) -> tuple[AlertState, Transition | None]:
    if breach:
        alert = replace(alert, cleared_since=None, value=value,
                        breach_since=alert.breach_since or at)
        if alert.state == "firing":
            return alert, None
        assert alert.breach_since is not None
        if at - alert.breach_since >= rule.for_:
            return _move(alert, at, "firing", value)
        if alert.state != "pending":
            return _move(alert, at, "pending", value)
        return alert, None
    alert = replace(alert, breach_since=None, value=value)
    if alert.state == "firing":
        alert = replace(alert, cleared_since=alert.cleared_since or at)
        if not ignore_keep and at - alert.cleared_since < rule.keep_firing_for:
            return alert, None
        return _move(alert, at, "inactive", value, shown="resolved")
    if alert.state in ("pending", "nodata", "error"):
        return _move(alert, at, "inactive", value,
                     shown="inactive" if alert.state == "pending" else "resolved")
    return alert, None


def _move(alert: AlertState, at: datetime, state: State, value: float | None,
          shown: str | None = None) -> tuple[AlertState, Transition]:
    moved = replace(alert, state=state, since=at, value=value, cleared_since=None)
    if state != "firing" and state != "pending":
        moved = replace(moved, breach_since=None)
    return moved, Transition(at, alert.state, shown or state, value)
