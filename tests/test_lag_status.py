"""The Burrow-style evaluator: every status is reached from samples on a controlled clock."""

from __future__ import annotations

import pytest

from collectors.lag_status import LagSample, LagStatus, LagStatusEvaluator

KEY = ("orders-consumer", "orders", 0)


def feed(
    evaluator: LagStatusEvaluator,
    readings: list[tuple[int, int]],
    *,
    start: float = 1_000.0,
    step: float = 30.0,
    active: bool | None = None,
):
    """Observe (offset, lag) readings one scan interval apart; return the last evaluation."""
    evaluation = None
    for i, (offset, lag) in enumerate(readings):
        sample = LagSample(time=start + i * step, offset=offset, lag=lag, group_active=active)
        evaluation = evaluator.observe(KEY, sample)
    assert evaluation is not None
    return evaluation


def test_a_caught_up_partition_is_ok_whatever_came_before() -> None:
    evaluator = LagStatusEvaluator(window=3, stop_after_s=60)
    result = feed(evaluator, [(10, 5), (10, 5), (10, 5), (10, 5), (15, 0)])
    assert result.status is LagStatus.OK
    assert "lag 0" in result.reason


def test_a_consumer_that_moves_and_catches_up_is_ok() -> None:
    evaluator = LagStatusEvaluator(window=4, stop_after_s=600)
    result = feed(evaluator, [(100, 50), (140, 30), (170, 40), (200, 20)])
    assert result.status is LagStatus.OK
    assert "came down" in result.reason


def test_lag_that_keeps_growing_while_commits_move_is_warn() -> None:
    evaluator = LagStatusEvaluator(window=4, stop_after_s=600)
    result = feed(evaluator, [(100, 10), (110, 25), (120, 25), (130, 60)])
    assert result.status is LagStatus.WARN
    assert result.reason.startswith("WARN: lag did not decrease over the last 4 samples (90s)")
    assert "10 -> 60" in result.reason and "100 -> 130" in result.reason


def test_an_offset_stuck_with_lag_over_the_whole_window_is_stall() -> None:
    evaluator = LagStatusEvaluator(window=3, stop_after_s=600)
    readings = [(120, 5), (120, 9), (120, 35)]
    assert feed(evaluator, readings[:2]).status is LagStatus.OK  # window not full yet
    evaluator = LagStatusEvaluator(window=3, stop_after_s=600)
    result = feed(evaluator, readings)
    assert result.status is LagStatus.STALL
    assert result.reason == (
        "STALL: committed offset 120 unchanged over the last 3 samples (60s) "
        "while lag stayed above 0 (now 35)"
    )


def test_a_stall_with_live_members_stays_stall_past_the_stop_limit() -> None:
    evaluator = LagStatusEvaluator(window=3, stop_after_s=60)
    result = feed(evaluator, [(120, 5)] * 6, active=True)
    assert result.status is LagStatus.STALL


def test_an_offset_standing_still_past_the_limit_is_stop_when_liveness_is_unknown() -> None:
    evaluator = LagStatusEvaluator(window=3, stop_after_s=90)
    readings = [(50, 1), (80, 3), (80, 8), (80, 9)]  # moved to 80 at t=1030, still at t=1090
    assert feed(evaluator, readings[:3]).status is LagStatus.WARN  # still for only 30s
    result = evaluator.observe(KEY, LagSample(time=1_120.0, offset=80, lag=9))
    assert result.status is LagStatus.STOP
    assert result.reason == (
        "STOP: committed offset 80 has not moved for 90s (limit 90s) with lag 9: commits stopped"
    )


def test_a_group_without_members_and_with_lag_is_stop_at_once() -> None:
    evaluator = LagStatusEvaluator(window=5, stop_after_s=600)
    result = feed(evaluator, [(80, 9)], active=False)
    assert result.status is LagStatus.STOP
    assert "no active members" in result.reason


def test_a_group_without_members_but_caught_up_is_ok() -> None:
    evaluator = LagStatusEvaluator(window=5, stop_after_s=600)
    assert feed(evaluator, [(80, 0)], active=False).status is LagStatus.OK


def test_a_committed_offset_going_back_is_rewind_until_it_leaves_the_window() -> None:
    evaluator = LagStatusEvaluator(window=3, stop_after_s=600)
    result = feed(evaluator, [(500, 0), (500, 0), (20, 480)])
    assert result.status is LagStatus.REWIND
    assert result.reason == (
        "REWIND: committed offset went back from 500 to 20 (0s ago); lag now 480"
    )
    result = evaluator.observe(KEY, LagSample(time=1_090.0, offset=60, lag=440))
    assert result.status is LagStatus.REWIND  # (500 -> 20) is still in the window
    result = evaluator.observe(KEY, LagSample(time=1_120.0, offset=100, lag=400))
    assert result.status is LagStatus.OK


def test_lag_reaching_zero_inside_the_window_is_ok() -> None:
    evaluator = LagStatusEvaluator(window=3, stop_after_s=600)
    assert feed(evaluator, [(10, 0), (10, 4), (10, 8)]).status is LagStatus.OK


def test_partitions_are_evaluated_independently_and_can_be_forgotten() -> None:
    evaluator = LagStatusEvaluator(window=2, stop_after_s=600)
    for t in (0.0, 30.0):
        evaluator.observe(("g", "t", 0), LagSample(time=t, offset=5, lag=3))
        ok = evaluator.observe(("g", "t", 1), LagSample(time=t, offset=5 + int(t), lag=3))
    stalled = evaluator.observe(("g", "t", 0), LagSample(time=60.0, offset=5, lag=3))
    assert stalled.status is LagStatus.STALL
    assert ok.status is LagStatus.WARN
    evaluator.retain([("g", "t", 1)])
    assert len(evaluator) == 1
    fresh = evaluator.observe(("g", "t", 0), LagSample(time=90.0, offset=5, lag=3))
    assert fresh.status is LagStatus.OK and "warming up (1 of 2" in fresh.reason


@pytest.mark.parametrize("kwargs", [{"window": 1}, {"stop_after_s": 0}])
def test_nonsense_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        LagStatusEvaluator(**kwargs)
