"""The console's colours follow the rules that page (``dashboard.status``)."""

from __future__ import annotations

from alerts.rules import Rule
from dashboard.status import Cell, Status, judge, judge_burn, judge_latency, worst
from tests.console_seed import ERRORS_RULE, P99_RULE

P99 = Cell("monitor", "latency_p99_ms", "latency")
BURN_PAGE = Rule.model_validate({
    "name": "fast:burn:1h-5m", "severity": "page",
    "burn_rate": {"slo": "fast", "long": "1h", "short": "5m", "factor": 14.4}})


def _alert(rule: str, state: str, severity: str = "page", version: str = "2") -> dict:
    return {"rule": rule, "state": state, "severity": severity, "model": "fraud",
            "model_version": version}


def test_a_value_past_a_paging_rule_is_red_and_says_which_rule():
    status = judge([P99_RULE], P99, "fraud", "2", 72.0, unit=" ms")
    assert status == Status("red", "72 ms > 50 ms (fraud-p99)")


def test_a_ticket_rule_makes_amber_and_within_every_rule_is_green():
    errors = Cell("monitor", "error_rate", "latency")
    assert judge([ERRORS_RULE], errors, "fraud", "1", 0.08).colour == "amber"
    assert judge([ERRORS_RULE], errors, "fraud", "1", 0.01) == Status("green", "within 1 rule")


def test_a_rule_for_another_model_or_series_does_not_colour_the_cell():
    assert judge([P99_RULE], P99, "search", "1", 500.0) == Status("none", "no rule watches it")
    assert judge([P99_RULE], Cell("monitor", "latency_p50_ms", "latency"), "fraud", "1",
                 500.0).colour == "none"


def test_no_data_and_too_little_data_are_grey_never_green():
    assert judge([P99_RULE], P99, "fraud", "1", None).colour == "grey"
    status = judge([P99_RULE], P99, "fraud", "1", 3.0, evidence="insufficient_data")
    assert status == Status("grey", "too little data to judge")


def test_alerts_raised_by_the_rule_colour_the_cell_even_once_the_value_is_back():
    # the rule still fires (for keep_firing_for, or before recovery) though the newest
    # value is below its threshold: the cell says so
    firing = [_alert("fraud-p99", "firing")]
    assert judge([P99_RULE], P99, "fraud", "2", 30.0, alerts=firing) == Status(
        "red", "fraud-p99 firing")
    pending = [_alert("fraud-p99", "pending")]
    assert judge([P99_RULE], P99, "fraud", "2", 30.0, alerts=pending).colour == "amber"
    # another version's alert leaves this one alone
    assert judge([P99_RULE], P99, "fraud", "1", 30.0, alerts=firing).colour == "green"


def test_latency_falls_back_to_its_slos_threshold_when_no_rule_watches_it():
    assert judge_latency([], "fraud", "1", 40.0, 30.0, requests=100).colour == "amber"
    assert judge_latency([], "fraud", "1", 20.0, 30.0, requests=100).colour == "green"
    assert judge_latency([], "fraud", "1", 20.0, None, requests=100).colour == "none"
    assert judge_latency([P99_RULE], "fraud", "1", None, 30.0).colour == "grey"


def test_a_burn_rule_breaches_only_when_both_its_windows_burn_past_the_factor():
    both = judge_burn([BURN_PAGE], "fast", "fraud", "1", {"1h": 20.0, "5m": 30.0})
    assert both.colour == "red" and "fast:burn:1h-5m" in both.reason
    assert judge_burn([BURN_PAGE], "fast", "fraud", "1",
                      {"1h": 20.0, "5m": 2.0}).colour == "green"
    assert judge_burn([BURN_PAGE], "fast", "fraud", "1",
                      {"1h": None, "5m": None}).colour == "grey"


def test_the_worst_status_wins():
    assert worst([Status("green", "a"), Status("red", "b"), Status("amber", "c")]).reason == "b"
    assert worst([]).colour == "none"
