"""Windows come from Watchloop's clock, bound into the queries, never from the server's now().

The store's server may run on a host whose clock is off; Watchloop's moment is the one its
``clock`` gives. Evaluated at a fixed moment an hour ago, the monitors and the console's
queries find the traffic of the hour before it, as they would have then, whatever the
server's clock says.
"""

from __future__ import annotations

from datetime import timedelta

from drift import MonitorRunner, MonitorSettings
from telemetry import TelemetryWriter, queries
from telemetry.clock import epoch_ms, from_epoch_ms, utc, utc_now

THEN = utc_now().replace(second=30, microsecond=0) - timedelta(hours=1)


def _traffic(store, minutes_before: int, n: int) -> None:
    start = THEN - timedelta(minutes=minutes_before)
    TelemetryWriter(store, clock=lambda: THEN).write_logs(
        [{"request_id": f"r{i}", "model": "fraud", "version": "7",
          "event_time": start + timedelta(seconds=i), "latency_ms": 2.0 + i % 5}
         for i in range(n)], "test")


def test_console_queries_window_on_the_given_moment(store):
    _traffic(store, 20, 300)  # 20 to 15 minutes before THEN: more than an hour ago now
    [row] = queries.model_traffic(store, 30, now=THEN)
    assert (row["model"], row["requests"]) == ("fraud", 300)
    assert queries.model_traffic(store, 30, now=utc_now()) == []
    per_minute = queries.requests_per_minute(store, 30, now=THEN)
    assert sum(r["requests"] for r in per_minute) == 300


def test_monitors_evaluated_at_a_fixed_moment_get_its_windows(store):
    _traffic(store, 20, 300)
    settings = MonitorSettings.model_validate(
        {"latency": {"window": "30m"}, "drift": {"enabled": False},
         "quality": {"enabled": False}})
    summary = MonitorRunner(settings, store, clock=lambda: THEN).run_once(THEN)
    [stats] = summary.traffic
    assert stats.requests == 300
    assert stats.window_end == THEN.replace(second=0)
    assert stats.window_start == THEN.replace(second=0) - timedelta(minutes=30)
    [written] = store.query_dicts(
        "SELECT window_end, value FROM monitor_results WHERE metric = 'requests'")
    assert (utc(written["window_end"]), written["value"]) == (THEN.replace(second=0), 300.0)


def test_epoch_milliseconds_round_trip_exactly():
    for ms in (0, 1_764_633_600_123, 253_402_300_799_999, -62_135_596_800_000):
        moment = from_epoch_ms(ms)
        assert moment.tzinfo is not None and epoch_ms(moment) == ms
