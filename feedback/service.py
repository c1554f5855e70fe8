"""The feedback loop as a component of ``watchloop up``: triggers, schedules, alias polling.

Alert triggers arrive on the alert outbox's delivery thread; a retraining takes minutes, so
``trigger`` only queues it and one worker thread carries the queue through, one retraining
at a time (the policy in Redis still decides, across processes). Models with a ``schedule``
are triggered every so often; the champion alias of every known model is polled so that a
move made by hand in MLflow is deployed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import timedelta
from typing import Any

from .loop import FeedbackLoop

__all__ = ["FeedbackService"]

log = logging.getLogger("watchloop.feedback")


class FeedbackService:
    """Runs queued and scheduled retrainings and polls champion aliases in the background."""

    name = "feedback"

    def __init__(self, loop: FeedbackLoop, *, models: tuple[str, ...] = (),
                 schedules: dict[str, timedelta] | None = None,
                 alias_poll: timedelta = timedelta(seconds=15)) -> None:
        self.loop = loop
        self.models = tuple(models)
        self.schedules = dict(schedules or {})
        self.alias_poll_s = alias_poll.total_seconds()
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.results: list[Any] = []  # the LoopResults, newest last (bounded)

    def trigger(self, model: str, reason: str, *, alert: dict[str, Any]) -> None:
        """``alerts.sinks.RetrainTrigger``: queue a retraining; return at once."""
        name = alert.get("labels", {}).get("alertname", "alert")
        self._queue.put((model, {"kind": "alert", "actor": f"alert:{name}", "reason": reason,
                                 "alert": alert}))

    def request(self, model: str, *, actor: str, reason: str, force: bool = False) -> None:
        """Queue a retraining by hand."""
        self._queue.put((model, {"kind": "manual", "actor": actor, "reason": reason,
                                 "force": force}))

    def start(self) -> None:
        self._stop.clear()
        targets = [("feedback-worker", self._work)]
        if self.schedules:
            targets.append(("feedback-schedule", self._schedule))
        if self.alias_poll_s > 0 and self.models:
            targets.append(("feedback-aliases", self._poll_aliases))
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop after the retraining in progress (its run has its own timeout)."""
        self._stop.set()
        self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()

    def _work(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                return
            model, kwargs = item
            try:
                result = self.loop.retrain(model, **kwargs)
                self.results = [*self.results[-99:], result]
                log.info("feedback: %s: %s %s", model, result.outcome, result.reason)
            except Exception:  # the worker must outlive one bad retraining
                log.exception("feedback: retraining %s failed", model)

    def _schedule(self) -> None:
        due = {model: time.monotonic() + every.total_seconds()
               for model, every in self.schedules.items()}
        while not self._stop.wait(1.0):
            now = time.monotonic()
            for model, at in due.items():
                if now >= at:
                    self._queue.put((model, {"kind": "schedule", "actor": "schedule",
                                             "reason": "scheduled retraining"}))
                    due[model] = now + self.schedules[model].total_seconds()

    def _poll_aliases(self) -> None:
        while not self._stop.wait(self.alias_poll_s):
            for model in self.models:
                try:
                    self.loop.sync_champion(model)
                except Exception as exc:  # noqa: BLE001 - MLflow or the server is away
                    log.warning("feedback: checking the champion alias of %s: %s", model, exc)
