"""Latency and error monitors from the rollup, and SLO burn rates equal to a hand computation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import ValidationError

from alerts.burn import burn_alerts
from drift import LatencyMonitor, MonitorSettings, SLOMonitor, SLOSettings
from drift.slo import floor_minute

# "now" is 30 s into a minute; windows end at the start of that minute.
NOW = floor_minute(datetime.now(UTC)) - timedelta(hours=1) + timedelta(seconds=30)
END = floor_minute(NOW)
DAYS = 3
MINUTES = DAYS * 24 * 60


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _traffic() -> dict[int, tuple[list[float], list[float]]]:
    """Per minute ago (1 = the last whole minute): latencies of ok and of failed requests."""
    minutes: dict[int, tuple[list[float], list[float]]] = {}
    for ago in range(1, MINUTES + 1):
        ok = [10.0, 10.0, 500.0 if ago % 100 == 0 else 20.0]
        errors: list[float] = []
        if ago <= 4:                     # an outage in the last minutes
            errors = [30.0] * 6
            ok.append(700.0)
        elif 30 <= ago < 40:             # an earlier incident within the hour
            errors = [30.0]
        elif 200 <= ago < 260:           # within 6 h
            errors = [30.0] if ago % 2 else []
        minutes[ago] = (ok, errors)
    return minutes


def _load(store, minutes) -> None:
    rows: dict[str, list] = {k: [] for k in (
        "request_id", "model", "model_version", "event_time", "ingest_time", "latency_ms",
        "status", "error", "numeric_features", "categorical_features", "prediction",
        "prediction_label", "source")}

    def add(at: datetime, latency: float, status: str) -> None:
        rows["request_id"].append(f"r{len(rows['request_id'])}")
        rows["model"].append("fraud")
        rows["model_version"].append("7")
        rows["event_time"].append(_ms(at))
        rows["ingest_time"].append(_ms(at))
        rows["latency_ms"].append(latency)
        rows["status"].append(status)
        rows["error"].append("boom" if status == "error" else "")
        rows["numeric_features"].append({})
        rows["categorical_features"].append({})
        rows["prediction"].append(0.5)
        rows["prediction_label"].append("")
        rows["source"].append("test")

    for ago, (ok, errors) in minutes.items():
        start = END - timedelta(minutes=ago)
        for i, latency in enumerate(ok + errors):
            add(start + timedelta(seconds=i), latency, "ok" if i < len(ok) else "error")
    for i in range(20):  # the current, unfinished minute never counts
        add(END + timedelta(seconds=i), 900.0, "error")
    store.insert_columns("inference_logs", rows)


def test_availability_burn_rates_equal_a_hand_computation(store):
    minutes = _traffic()
    _load(store, minutes)
    slo = SLOSettings(name="fraud-availability", model="fraud", kind="availability",
                      objective=0.999, period="3d")
    status = SLOMonitor(store, [slo]).evaluate(slo, "fraud", "7", NOW)
    budget = 0.001
    for window in (timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=1),
                   timedelta(hours=6), timedelta(days=3)):
        total = sum(len(ok) + len(err) for a, (ok, err) in minutes.items()
                    if a <= window.total_seconds() // 60)
        bad = sum(len(err) for a, (ok, err) in minutes.items()
                  if a <= window.total_seconds() // 60)
        rate = status.burn(window)
        assert (rate.requests, rate.bad) == (total, bad), window
        assert rate.burn_rate == pytest.approx(bad / total / budget), window
    # 5 m: 24 bad of 43 (an outage), 558x; 1 h: 34 of 218, 156x: the fast page fires
    assert status.burn(timedelta(minutes=5)).burn_rate == pytest.approx(24 / 43 / 0.001)
    assert status.burn(timedelta(hours=1)).burn_rate == pytest.approx(34 / 218 / 0.001)
    fast, slow, ticket = burn_alerts(status)
    assert (fast.severity, fast.factor, fast.firing) == ("page", 14.4, True)
    assert slow.firing  # 6 h: 64 of 1148, 56x; 30 m: 25 of 119, 210x; both above 6x
    assert ticket.firing and ticket.long_burn > 1
    assert status.budget_remaining == pytest.approx(1 - status.period.burn_rate)
    assert status.budget_remaining < 0  # the 3-day budget is spent


def test_latency_burn_rates_count_successful_requests_over_the_threshold(store):
    minutes = _traffic()
    _load(store, minutes)
    slo = SLOSettings(name="fraud-latency", kind="latency", objective=0.99, threshold_ms=100)
    status = SLOMonitor(store).evaluate(slo, "fraud", "7", NOW)
    for window in (timedelta(minutes=5), timedelta(hours=1), timedelta(hours=6),
                   timedelta(days=3)):
        span = range(1, int(window.total_seconds() // 60) + 1)
        total = sum(len(minutes[a][0]) for a in span)
        slow = sum(sum(x > 100 for x in minutes[a][0]) for a in span)
        rate = status.burn(window)
        assert (rate.requests, rate.bad) == (total, slow), window
        assert rate.burn_rate == pytest.approx(slow / total / 0.01), window
    # 4 slow of 19 in the last 5 min is 21x; over the hour 4 of 184 is 2.2x: no page
    fast = burn_alerts(status)[0]
    assert fast.short_burn > 14.4 and fast.long_burn < 14.4 and not fast.firing


def test_no_traffic_leaves_burn_rates_undefined(store):
    slo = SLOSettings(name="quiet", kind="availability", objective=0.99)
    status = SLOMonitor(store).evaluate(slo, "fraud", "7", NOW)
    assert all(r.burn_rate is None and r.requests == 0 and r.status == "no_data"
               and r.coverage == 0 for r in status.burn_rates)
    assert not any(a.firing for a in burn_alerts(status)) and status.budget_remaining is None


def test_traffic_stats_come_from_the_rollup(store):
    minutes = _traffic()
    _load(store, minutes)
    [stats] = LatencyMonitor(store).evaluate(NOW, window=timedelta(minutes=10))
    span = range(1, 11)
    latencies = [x for a in span for x in minutes[a][0] + minutes[a][1]]
    errors = sum(len(minutes[a][1]) for a in span)
    assert (stats.model, stats.version) == ("fraud", "7")
    assert (stats.requests, stats.errors) == (len(latencies), errors)
    assert stats.error_rate == pytest.approx(errors / len(latencies))
    assert stats.throughput_rps == pytest.approx(len(latencies) / 600)
    assert stats.latency_mean_ms == pytest.approx(np.mean(latencies))
    assert stats.latency_max_ms == max(latencies)
    # ClickHouse's quantile states keep every value below 8192 of them: exact here
    assert stats.p50_ms == pytest.approx(np.percentile(latencies, 50))
    assert stats.p99_ms == pytest.approx(np.percentile(latencies, 99))
    assert LatencyMonitor(store).evaluate(NOW, model="other") == []


def test_slo_settings_are_validated():
    with pytest.raises(ValidationError, match="threshold_ms"):
        SLOSettings(name="x", kind="latency", objective=0.99)
    with pytest.raises(ValidationError, match="objective"):
        SLOSettings(name="x", kind="availability", objective=1.0)
    settings = MonitorSettings.model_validate({
        "interval": "30s",
        "slos": [{"name": "a", "model": "fraud", "kind": "availability", "objective": 0.999,
                  "burn_windows": [{"long": "1h", "short": "5m", "factor": 14.4}]}],
    })
    assert settings.interval == timedelta(seconds=30)
    assert settings.slos[0].burn_windows[0].long == timedelta(hours=1)
    assert settings.slos[0].applies_to("fraud", "7") and not settings.slos[0].applies_to("x", "1")
    with pytest.raises(ValidationError, match="Extra inputs"):
        MonitorSettings.model_validate({"drift": {"treshold": 0.2}})
