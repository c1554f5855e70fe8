"""Backtests replay a rule over stored history exactly as the live rule would have run.

Synthetic history with known incidents: a p99 series breaching in two incidents, with a
flapping stretch between that ``for``, ``keep_firing_for`` and a recovery threshold must turn
into one page; a query rule over raw logs whose precision and recall are counted by hand.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from alerts.backtest import Incident, backtest, radar
from alerts.evaluate import rule_samples
from alerts.lifecycle import AlertState, advance
from alerts.rules import Rule
from drift.results import ResultWriter
from telemetry import TelemetryWriter
from telemetry.clock import utc_now

START = utc_now().replace(second=0, microsecond=0) - timedelta(hours=4)
MINUTE = timedelta(minutes=1)


def _p99(minute: int) -> float:
    """The p99 at each minute: incidents at 30-45 and 120-130; at 70-80 a breach that then
    flaps between 60 and 45 (under the threshold, above the recovery threshold)."""
    if 30 <= minute < 45 or 120 <= minute < 130 or 70 <= minute < 73:
        return 80.0
    if 73 <= minute < 80:
        return 60.0 if minute % 2 == 0 else 45.0
    return 20.0


def _write_history(store, minutes: int = 180, start=START) -> None:
    for m in range(minutes):
        at = start + m * MINUTE
        ResultWriter(store, clock=lambda at=at: at + timedelta(seconds=2)).write_metrics(
            "latency", "fraud", "7", at - 5 * MINUTE, at, {"latency_p99_ms": _p99(m)}, at,
            status="ok", window_rows=100, sample_size=100, coverage=1.0)


RULE = Rule.model_validate({
    "name": "fraud-p99", "interval": "1m", "for": "2m", "keep_firing_for": "3m",
    "threshold": {"series": {"source": "monitor", "monitor": "latency",
                             "metric": "latency_p99_ms", "model": "fraud"},
                  "op": ">", "value": 50, "recovery": 40},
})


def test_a_backtest_gives_exactly_the_expected_firings(store):
    _write_history(store)
    incidents = [Incident(START + 30 * MINUTE, START + 45 * MINUTE),
                 Incident(START + 120 * MINUTE, START + 130 * MINUTE),
                 Incident(START + 150 * MINUTE, START + 160 * MINUTE)]  # never happened
    result = backtest(store, RULE, START + MINUTE, START + 180 * MINUTE, incidents)
    fired = [(f.fired_at - START, f.resolved_at - START if f.resolved_at else None)
             for f in result.firings]
    # Each breach fires after for=2m (a sample ingested 2 seconds after its minute is seen
    # at the next step), and resolves keep_firing_for=3m after the first step that found the
    # value back under the recovery threshold. The flap (60, 45, 60, ...: 45 is under the
    # threshold but above the recovery of 40) stays one firing.
    assert fired == [(33 * MINUTE, 49 * MINUTE), (73 * MINUTE, 84 * MINUTE),
                     (123 * MINUTE, 134 * MINUTE)]
    assert [t.state for t in result.transitions[(("model", "fraud"), ("version", "7"))]] == [
        "pending", "firing", "resolved", "pending", "firing", "resolved", "pending", "firing",
        "resolved"]
    assert result.notifications == 6
    assert [d for _, d in result.detection] == [3 * MINUTE, 3 * MINUTE, None]
    assert result.pages_per_week == pytest.approx(3 / (179 / (60 * 24 * 7)))


def test_the_live_lifecycle_step_by_step_gives_the_same_firings(store):
    _write_history(store)
    result = backtest(store, RULE, START + MINUTE, START + 180 * MINUTE)
    alert, live = AlertState(), []
    for m in range(1, 180):  # the live evaluator: one query per step, as of that step
        at = START + m * MINUTE
        [(labels, [value])] = rule_samples(store, RULE, [at]).items()
        alert, change = advance(RULE, alert, at, value)
        if change is not None:
            live.append((change.at, change.state))
    backtested = [(t.at, t.state) for ts in result.transitions.values() for t in ts]
    assert live == backtested


def test_a_monitor_that_writes_no_data_puts_the_rule_in_no_data(store):
    _write_history(store, minutes=20)
    at = START + 20 * MINUTE
    ResultWriter(store, clock=lambda: at).write_metrics(
        "latency", "fraud", "7", at - 5 * MINUTE, at, {"latency_p99_ms": None}, at,
        status="no_data")
    result = backtest(store, RULE, START + MINUTE, START + 25 * MINUTE)
    [changes] = result.transitions.values()
    assert [(t.at - START, t.state) for t in changes] == [(20 * MINUTE, "nodata")]


def _logs(store) -> None:
    """Card c1 makes 8 purchases over 500 in a minute (fraud), c2 makes 3 (good), c3 makes 7
    of which the labels say only some are fraud."""
    # ingested at 10:40 past START: before c3's purchases at 15:00-15:30 (they are seen from
    # their event time on), after c1's at 10:00-10:35 (seen from 10:40 on)
    writer = TelemetryWriter(store, clock=lambda: START + timedelta(minutes=10, seconds=40))
    records, labels = [], []

    def buy(card: str, i: int, at, amount: float, fraud: int | None) -> None:
        rid = f"{card}-{i}"
        records.append({"request_id": rid, "model": "fraud", "version": "7",
                        "event_time": at, "latency_ms": 1.0,
                        "features": {"card_id": card, "amount": amount}})
        if fraud is not None:
            labels.append({"request_id": rid, "label": fraud, "label_time": at})

    base = START + timedelta(minutes=10)
    for i in range(8):
        buy("c1", i, base + timedelta(seconds=5 * i), 900.0, 1)
    for i in range(3):
        buy("c2", i, base + timedelta(seconds=5 * i), 800.0, 0)
    for i in range(7):
        buy("c3", i, base + timedelta(minutes=5, seconds=5 * i), 600.0,
            1 if i >= 5 else 0)
    buy("c4", 0, base, 100.0, 1)  # fraud the rule cannot see: amount under 500
    assert writer.write_logs(records, "test").accepted == len(records)
    assert writer.write_labels(labels, "test").accepted == len(labels)


QUERY_RULE = Rule.model_validate({
    "name": "card-velocity", "interval": "1m",
    "query": {"model": "fraud", "where": "amount > 500", "group_by": ["card_id"],
              "aggregate": "count", "window": "1m", "op": ">", "value": 5},
})


def test_a_query_rule_backtest_gives_precision_and_recall_computed_by_hand(store):
    _logs(store)
    found = radar(store, QUERY_RULE.query, START, START + timedelta(hours=1), amount="amount")
    # c1: the 6th, 7th and 8th purchases see more than 5 in their minute: 3 hits, fraud.
    # c3: the 6th and 7th: 2 hits; the labels say both are fraud (i >= 5).
    # c2 never exceeds 5. Positives: c1 x8, c3 x2, c4 x1 = 11.
    assert (found.hit, found.caught, found.false_hits, found.positives) == (5, 5, 0, 11)
    assert found.precision == 1.0 and found.recall == pytest.approx(5 / 11)
    assert found.caught_amount == 3 * 900 + 2 * 600
    assert found.missed_amount == 5 * 900 + 100


def test_a_query_rule_fires_per_card_while_the_window_holds_more_than_five(store):
    _logs(store)
    result = backtest(store, QUERY_RULE, START, START + timedelta(hours=1))
    fired = {dict(f.labels)["card_id"]: (f.fired_at - START, f.resolved_at - START)
             for f in result.firings}
    # At minute 11, the window (10:00, 11:00] holds 7 of c1's purchases (10:05 to 10:35); at
    # minute 12 none. At minute 16, (15:00, 16:00] holds 6 of c3's (15:05 to 15:30).
    assert fired == {"c1": (11 * MINUTE, 12 * MINUTE), "c3": (16 * MINUTE, 17 * MINUTE)}


def test_rules_from_a_directory_are_checked_with_file_and_line(tmp_path):
    from watchloop.config import ConfigError, load_config

    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "fraud.yaml").write_text(
        "- name: ok-rule\n  threshold: {series: {monitor: latency, metric: latency_p99_ms},"
        " value: 50}\n"
        "- name: bad-rule\n  query:\n    model: fraud\n    where: \"amount >\"\n"
        "    value: 5\n  for: 2m\n  keep_firng_for: 1m\n")
    (tmp_path / "watchloop.yaml").write_text("alerts:\n  rules_dir: rules\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "watchloop.yaml")
    text = str(caught.value)
    assert f"{tmp_path / 'rules' / 'fraud.yaml'}:6: rules[1].query.where: not an expression" \
        in text
    assert "rules[1].keep_firng_for: unknown key; did you mean `keep_firing_for`?" in text


def test_the_backtest_command_prints_the_firings(tmp_path):
    import subprocess
    import sys

    url = f"chdb://{tmp_path / 'store'}"
    # in a process of its own: this one's chDB engine is bound to the in-memory stores
    subprocess.run([sys.executable, "-c", (
        "import sys; from datetime import datetime\n"
        "from telemetry import Migrator, open_store\n"
        "from tests.test_alert_backtest import _write_history\n"
        "store = open_store(sys.argv[1]); Migrator(store).migrate()\n"
        "_write_history(store, start=datetime.fromisoformat(sys.argv[2])); store.close()"),
        url, START.isoformat()], check=True, timeout=120, cwd=Path(__file__).parent.parent)
    (tmp_path / "watchloop.yaml").write_text(
        "alerts:\n  rules:\n    - name: fraud-p99\n      for: 2m\n      keep_firing_for: 3m\n"
        "      threshold: {series: {monitor: latency, metric: latency_p99_ms}, value: 50,"
        " recovery: 40}\n")
    done = subprocess.run(
        [sys.executable, "-m", "watchloop.cli", "backtest", "fraud-p99", "--store", url,
         "--from", (START + MINUTE).isoformat(), "--to", (START + 180 * MINUTE).isoformat(),
         "--json"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    import json

    result = json.loads(done.stdout)
    assert result["firings"] == 3 and result["notifications"] == 6
    missing = subprocess.run([sys.executable, "-m", "watchloop.cli", "backtest", "nope",
                              "--store", url], capture_output=True, text=True, timeout=60,
                             cwd=tmp_path)
    assert missing.returncode == 2 and "the config has: fraud-p99" in missing.stderr


def test_each_slo_burn_window_becomes_a_rule_that_fires_when_both_windows_burn(store):
    from watchloop.config import parse_config

    config = parse_config(
        "monitors:\n  slos: [{name: avail, model: fraud, kind: availability, "
        "objective: 0.999}]\nalerts: {}\n", "watchloop.yaml", {})
    rules = {r.name: r for r in config.alert_rules()}
    assert set(rules) == {"avail:burn:1h-5m", "avail:burn:6h-30m", "avail:burn:3d-6h"}
    fast = rules["avail:burn:1h-5m"]
    assert (fast.severity, fast.burn_rate.factor) == ("page", 14.4)
    for m in range(30):  # the 1h window burns at 20x throughout; the 5m one from minute 10
        at = START + m * MINUTE
        for window, rate in (("1h", 20.0), ("5m", 30.0 if 10 <= m < 20 else 2.0)):
            ResultWriter(store, clock=lambda at=at: at).write_metrics(
                "slo", "fraud", "7", at - MINUTE, at, {"burn_rate": rate}, at,
                {"slo": "avail", "window": window}, status="ok")
    result = backtest(store, fast, START + MINUTE, START + 30 * MINUTE)
    [firing] = result.firings
    assert (firing.fired_at - START, firing.resolved_at - START) == (10 * MINUTE, 20 * MINUTE)
    assert dict(firing.labels) == {"model": "fraud", "version": "7", "slo": "avail"}


def test_a_diff_of_two_versions_of_a_rule_shows_the_pages_it_adds_and_removes(store):
    from alerts.backtest import diff

    _write_history(store)
    stricter = RULE.model_copy(update={"name": "fraud-p99-v2", "for_": timedelta(minutes=12)})
    changed = diff(store, RULE, stricter, START + MINUTE, START + 180 * MINUTE)
    # a 12-minute `for` keeps only the first incident (15 minutes of breach) paging
    assert [(a.fired_at - START, b.fired_at - START) for a, b in changed.both] == [
        (33 * MINUTE, 43 * MINUTE)]
    assert [f.fired_at - START for f in changed.only_before] == [73 * MINUTE, 123 * MINUTE]
    assert changed.only_after == []


def test_a_kafka_consumer_group_that_stalls_fires_a_status_rule(store):
    rule = Rule.model_validate({
        "name": "lag-stalled", "interval": "1m", "threshold": {
            "series": {"source": "kafka_lag", "metric": "status"}, "op": ">=", "value": 3}})
    rows = []
    for m in range(20):
        at = START + m * MINUTE
        status = "STALL" if 5 <= m < 10 else "OK"
        rows.append([at, at, "main", "features", "events", 0, 100, 100 + m, m, 2.0 * m,
                     status, ""])
    store.insert("kafka_lag", rows, ("ts", "ingest_time", "cluster", "consumer_group", "topic",
                                     "partition", "committed_offset", "log_end_offset",
                                     "lag_messages", "lag_seconds", "status", "reason"))
    result = backtest(store, rule, START, START + 20 * MINUTE)
    [firing] = result.firings
    assert (firing.fired_at - START, firing.resolved_at - START) == (5 * MINUTE, 10 * MINUTE)
    assert dict(firing.labels) == {"group": "features", "topic": "events", "partition": "0"}


def test_a_dead_letter_rate_rule_reads_a_counter_as_its_increase_per_second(store):
    rule = Rule.model_validate({
        "name": "dead-letters", "interval": "1m", "threshold": {
            "series": {"source": "collector", "metric": "dead_letters", "rate": True},
            "op": ">", "value": 1.0}})
    rows, total = [], 0
    for m in range(20):
        total += 180 if 8 <= m < 12 else 6  # 3/s for four minutes, else 0.1/s
        at = START + m * MINUTE
        rows.append([at, at, "kafka", "source", 1000 * m, 1000 * m, total, 0, 0])
    store.insert("collector_health", rows, ("ts", "ingest_time", "collector", "kind",
                                            "rows_in", "rows_out", "dead_letters",
                                            "duplicates", "store_retries"))
    result = backtest(store, rule, START + MINUTE, START + 20 * MINUTE)
    [firing] = result.firings
    assert (firing.fired_at - START, firing.resolved_at - START) == (8 * MINUTE, 12 * MINUTE)
    assert firing.peak == pytest.approx(3.0)
