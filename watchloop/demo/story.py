"""The demo's story, told on the terminal while Watchloop runs: the first version, live
traffic, injected drift, and the loop closing on its own.

``DemoStory.run`` trains and deploys version 1 through the feedback loop (on labelled
pre-drift history written to the store, the only rows that do not come through Kafka),
starts the traffic and the feature pipeline, waits ``warm_up_s``, injects drift, then
watches the store and the serving backend until a version retrained by the alert serves.
It prints each stage as it happens and a summary with the stage times, and writes the
summary to ``demo-summary.json`` in the data directory.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from feedback import FeedbackService
from feedback.demo_model import Transactions, store_traffic
from telemetry import Store
from telemetry.clock import utc_now

from .drivers import DogStatsdCapture, FeaturePipeline, ServedTraffic
from .pace import Pace
from .stack import DRIFT_RULE, MODEL, DemoStack

SUMMARY_FILE = "demo-summary.json"

_DETECTED = """
SELECT min(ts) FROM drift_results
WHERE model = {m:String} AND feature = '__dataset__' AND score > 0.3 AND ts >= {t:DateTime64(3)}
"""
_ALERT = """
SELECT min(ts) FROM alert_events
WHERE rule = {r:String} AND state = {s:String} AND ts >= {t:DateTime64(3)}
"""
_STORED = """
SELECT (SELECT count() FROM inference_logs WHERE model = {m:String} AND source != 'demo'),
       (SELECT count() FROM labels WHERE source != 'demo'),
       (SELECT count() FROM kafka_lag), (SELECT count() FROM serving_metrics)
"""


class Progress:
    """Timestamped lines on the terminal, seconds since the demo began."""

    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self._began = time.monotonic()
        self._write = write or (lambda line: print(line, flush=True))
        self._lock = threading.Lock()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._began

    def __call__(self, message: str) -> None:
        with self._lock:
            self._write(f"[{self.elapsed:6.1f}s] {message}")


@dataclass
class Summary:
    """What the demo did, for the terminal and for ``demo-summary.json``."""

    backend: str
    pace: str
    urls: dict[str, str]
    services: dict[str, int]
    closed: bool = False
    version_before: str | None = None
    version_after: str | None = None
    stages: dict[str, float] = field(default_factory=dict)
    total_s: float | None = None
    lineage: list[str] = field(default_factory=list)
    datagrams: int = 0
    answered: dict[str, int] = field(default_factory=dict)
    failed_requests: int = 0
    reason: str = ""

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=1, default=str) + "\n")


class DemoStory:
    """Bootstrap, warm-up, drift, and the loop closing, on a thread of its own; a component
    of the demo's ``Shell``, so stopping it stops the traffic and the pipeline it started."""

    name = "demo-story"

    def __init__(self, *, store: Store, stack: DemoStack, feedback: FeedbackService,
                 traffic: ServedTraffic, pipeline: FeaturePipeline, statsd: DogStatsdCapture,
                 pace: Pace, training_span: timedelta, summary: Summary, data_dir: Path,
                 progress: Progress, deadline_s: float = 900) -> None:
        self.store, self.stack, self.feedback = store, stack, feedback
        self.traffic, self.pipeline, self.statsd = traffic, pipeline, statsd
        self.pace, self.training_span = pace, training_span
        self.summary, self.data_dir, self.progress = summary, data_dir, progress
        self.deadline_s = deadline_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=120)  # a retraining in progress finishes first
        self.traffic.stop()
        self.pipeline.stop()

    def run(self) -> None:
        """The whole story; failures are reported, never raised (this is a thread)."""
        try:
            self._bootstrap()
            if self._stop.is_set():
                return
            self._warm_up()
            if self._stop.is_set():
                return
            self._close_the_loop()
        except Exception as exc:  # noqa: BLE001 - say what went wrong; Ctrl-C still stops
            self.summary.reason = f"{type(exc).__name__}: {exc}"
            self.progress(f"the demo stopped telling its story: {self.summary.reason} "
                          f"(details in {self.data_dir / 'watchloop.log'})")
        finally:
            self._write_summary()

    # -- the chapters --------------------------------------------------------------------

    def _bootstrap(self) -> None:
        pace, loop = self.pace, self.feedback.loop
        now = utc_now()
        self.progress(f"writing {pace.history_rows:,} labelled transactions of history "
                      "(before Watchloop) to train version 1 on")
        x, y = Transactions(3).sample(pace.history_rows, drift=0.0)
        store_traffic(self.store, MODEL, "0", x, y, now - self.training_span, now)
        self.progress("training version 1 (MLflow run, gate, verified deploy)")
        first = loop.retrain(MODEL, kind="manual", actor="demo", reason="the first version",
                             force=True)
        if first.outcome != "promoted":
            raise RuntimeError(f"version 1 was not deployed: {first.reason}")
        self.summary.version_before = first.version
        self.progress(f"version {first.version} serves on {self.stack.backend} "
                      f"(trained in {first.stages.get('train', 0):.1f} s)")

    def _warm_up(self) -> None:
        pace = self.pace
        self.traffic.start()
        self.pipeline.start()
        self.progress(f"traffic: {pace.records_per_s:.0f} transactions/s through "
                      f"{self.stack.backend}, payload logs and labels ({pace.label_delay_s:g} s "
                      f"later) through Kafka; a feature pipeline with lag")
        urls = self.summary.urls
        for name in ("console", "api", "mlflow"):
            if name in urls:
                self.progress(f"{name:<8} {urls[name]}")
        self.progress(f"drift is injected in {pace.warm_up_s:.0f} s")
        until = time.monotonic() + pace.warm_up_s
        while not self._stop.wait(min(15.0, max(0.0, until - time.monotonic()))):
            self._report_flow()
            if time.monotonic() >= until:
                return

    def _close_the_loop(self) -> None:
        self.traffic.drift = 1.0
        injected = utc_now()
        began = time.monotonic()
        self.progress("drift injected: amounts and distances grow, cards are present less "
                      "often, and fraud changes its pattern")
        stages: dict[str, float] = {}
        detected = fired = None
        before = self.summary.version_before
        while not self._stop.wait(2.0):
            if detected is None:
                detected = self._first(_DETECTED, {"m": MODEL, "t": injected})
                if detected is not None:
                    stages["detect"] = _seconds(injected, detected)
                    self.progress(f"drift detected by the monitor "
                                  f"({stages['detect']:.0f} s after injection); "
                                  f"{DRIFT_RULE} is pending")
            if detected is not None and fired is None:
                fired = self._first(_ALERT, {"r": DRIFT_RULE, "s": "firing", "t": injected})
                if fired is not None:
                    stages["alert"] = _seconds(detected, fired)
                    self.progress(f"{DRIFT_RULE} fired: Datadog and the retrain receiver "
                                  "are notified")
            result = next((r for r in reversed(self.feedback.results)
                           if r.version != before and r.outcome != "refused"), None)
            if result is not None and result.outcome != "promoted":
                self.summary.reason = f"the retraining ended {result.outcome}: {result.reason}"
                self.progress(self.summary.reason)
                return
            if result is not None and result.version in self.traffic.first_answer:
                self._closed(result, stages, injected)
                return
            if time.monotonic() - began > self.deadline_s:
                self.summary.reason = (f"the loop did not close within {self.deadline_s:.0f} s"
                                       " of the injection")
                self.progress(self.summary.reason)
                return

    def _closed(self, result: Any, stages: dict[str, float], injected: datetime) -> None:
        version = result.version
        serving_at = self.traffic.first_answer[version]
        for name in ("data", "train", "register", "gate", "deploy"):
            if name in result.stages:
                stages[name] = result.stages[name]
        stages["verify"] = result.stages.get("verify", 0) + result.stages.get("promote", 0)
        summary = self.summary
        summary.closed = True
        summary.version_after = version
        summary.stages = {k: round(v, 2) for k, v in stages.items()}
        summary.total_s = round(serving_at - injected.timestamp(), 2)
        (retraining, *_) = self.feedback.loop.lineage.trace(MODEL, version=version)
        summary.lineage = [f"{s['step']}:{s['status']}" for s in retraining.steps]
        self.progress(f"version {version} answers traffic: the loop closed "
                      f"{summary.total_s:.0f} s after the drift was injected")
        self.progress("stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
        self.progress("lineage: " + " → ".join(summary.lineage))
        gate = result.gate.as_dict() if result.gate is not None else {}
        if gate:
            self.progress(f"gate: challenger {gate.get('challenger', 0):.3f} vs champion "
                          f"{gate.get('champion', 0):.3f} roc_auc on rows it was not "
                          "trained on")
        where = self.summary.urls.get("console")
        self.progress(f"the demo keeps running{f'; see it at {where}' if where else ''}. "
                      "Ctrl-C stops everything it started")

    # -- helpers -------------------------------------------------------------------------

    def _report_flow(self) -> None:
        logs, labels, lag_rows, metric_rows = self.store.query(_STORED, {"m": MODEL})[0]
        self.progress(f"stored {logs:,} inference logs and {labels:,} labels from Kafka; "
                      f"{lag_rows:,} lag samples, {metric_rows:,} serving metrics; "
                      f"{self.traffic.failed} failed requests")

    def _first(self, sql: str, parameters: dict[str, Any]) -> datetime | None:
        value = self.store.scalar(sql, parameters)
        if not isinstance(value, datetime) or value.year <= 1970:  # min() of no rows
            return None
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    def _write_summary(self) -> None:
        summary = self.summary
        summary.datagrams = len(self.statsd.datagrams)
        summary.answered = dict(self.traffic.answered)
        summary.failed_requests = self.traffic.failed
        summary.write(self.data_dir / SUMMARY_FILE)


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())
