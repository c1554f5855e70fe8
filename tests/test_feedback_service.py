"""The loop as a component: an alert's trigger returns at once (the outbox's delivery thread
must not wait minutes for a retraining), queued retrainings run one at a time in order, and
a schedule triggers by itself."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from feedback.service import FeedbackService
from tests.helpers import wait_until


class RecordingLoop:
    """Stands in for FeedbackLoop's retrain: records calls, blocks until released."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.release = threading.Event()
        self.running = 0
        self.most_at_once = 0

    def retrain(self, model: str, **kwargs):
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        self.calls.append((model, kwargs))
        self.release.wait(10)
        self.running -= 1
        return type("Result", (), {"outcome": "promoted", "reason": ""})()

    def sync_champion(self, model: str) -> None:
        return None


def test_alert_triggers_return_at_once_and_run_one_at_a_time_in_order():
    loop = RecordingLoop()
    service = FeedbackService(loop, alias_poll=timedelta(0))
    service.start()
    try:
        started = time.perf_counter()
        for model in ("fraud", "recs", "fraud"):
            service.trigger(model, "alert drift fired",
                            alert={"labels": {"alertname": "FeatureDrift"}})
        assert time.perf_counter() - started < 1.0
        wait_until(lambda: len(loop.calls) == 1, timeout=10)
        assert loop.calls[0] == ("fraud", {"kind": "alert", "actor": "alert:FeatureDrift",
                                           "reason": "alert drift fired", "alert": {
                                               "labels": {"alertname": "FeatureDrift"}}})
        loop.release.set()
        wait_until(lambda: len(loop.calls) == 3, timeout=10)
        assert [m for m, _ in loop.calls] == ["fraud", "recs", "fraud"]
        assert loop.most_at_once == 1
    finally:
        loop.release.set()
        service.stop()


def test_a_scheduled_model_is_triggered_by_itself():
    loop = RecordingLoop()
    loop.release.set()
    service = FeedbackService(loop, schedules={"fraud": timedelta(seconds=1)},
                              alias_poll=timedelta(0))
    service.start()
    try:
        wait_until(lambda: len(loop.calls) >= 2, timeout=15)
        assert {(m, k["kind"], k["actor"]) for m, k in loop.calls} == {
            ("fraud", "schedule", "schedule")}
    finally:
        service.stop()
