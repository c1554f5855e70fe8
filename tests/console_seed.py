"""A store seeded as a live marketplace would leave it, for the console's tests.

Two versions of ``fraud`` with traffic over the last 40 minutes (v2 slow and failing more),
a reference profile and monitor results (v2's ``amount`` drifted), labels, a firing paging
alert on v2's p99 and a pending one, Kafka lag with a stalled partition, a failing collector,
dead letters, deployments and a retraining's lineage. The rules the console judges by are
``RULES``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from alerts.evaluate import fingerprint
from alerts.evaluator import EVENT_COLUMNS
from alerts.rules import Rule
from dashboard.shared import ConsoleSettings
from drift import MonitorRunner, MonitorSettings, ProfileBuilder, ProfileRepository
from drift.frames import log_columns
from drift.settings import SLOSettings
from drift.slo import floor_minute
from feedback.lineage import LineageLog
from serving_adapters import DeploymentLog
from telemetry import Store, TelemetryWriter

P99_RULE = Rule.model_validate({
    "name": "fraud-p99", "severity": "page",
    "threshold": {"series": {"source": "monitor", "monitor": "latency",
                             "metric": "latency_p99_ms", "model": "fraud"},
                  "op": ">", "value": 50},
    "annotations": {"summary": "fraud p99 over 50 ms",
                    "runbook_url": "https://runbooks.example/fraud-p99"}})
ERRORS_RULE = Rule.model_validate({
    "name": "fraud-errors", "severity": "ticket",
    "threshold": {"series": {"source": "monitor", "monitor": "latency",
                             "metric": "error_rate", "model": "fraud"},
                  "op": ">", "value": 0.05}})
BIG_AMOUNTS = Rule.model_validate({
    "name": "big-amounts", "severity": "ticket",
    "query": {"model": "fraud", "where": "amount > 2", "aggregate": "count", "window": "1m",
              "op": ">", "value": 0}})
RULES = (P99_RULE, ERRORS_RULE, BIG_AMOUNTS)
LATENCY_SLO = SLOSettings.model_validate({"name": "fraud-fast", "kind": "latency",
                                          "objective": 0.99, "threshold_ms": 30})


@dataclass
class Seeded:
    now: datetime
    firing_fp: str
    pending_fp: str
    settings: ConsoleSettings


def seed(store: Store, *, api_url: str | None = None) -> Seeded:
    """Fill ``store`` (see the module docs)."""
    now = floor_minute(datetime.now(UTC)) + timedelta(seconds=5)
    rng = np.random.default_rng(7)
    start = now - timedelta(minutes=40)
    for version, latency, errors, shift in (("1", 8.0, 0.01, 0.0), ("2", 70.0, 0.08, 3.0)):
        n = 1200
        frame = pd.DataFrame({"amount": rng.normal(shift, 1, n), "hour": rng.uniform(0, 24, n),
                              "score": rng.random(n)})
        times = np.linspace(start.timestamp() * 1000, (now.timestamp() - 70) * 1000, n)
        ids = [f"{version}-{i}" for i in range(n)]
        columns = log_columns(frame, "fraud", version, times.astype(int),
                              int(start.timestamp() * 1000), prediction="score", request_ids=ids)
        columns["latency_ms"] = list(rng.gamma(4, latency / 4, n))
        columns["status"] = ["error" if f else "ok" for f in rng.random(n) < errors]
        store.insert_columns("inference_logs", columns)
        # labels arrive for the first half: the truth agrees with confident scores
        truth = [{"request_id": ids[i], "label": int(frame.score[i] > 0.5) if rng.random() < 0.9
                  else int(frame.score[i] <= 0.5), "label_time": now.timestamp() - 60}
                 for i in range(n // 2)]
        assert TelemetryWriter(store).write_labels(truth, "test").rejected == 0
        reference = pd.DataFrame({"amount": rng.normal(0, 1, 3000),
                                  "hour": rng.uniform(0, 24, 3000), "score": rng.random(3000)})
        ProfileRepository(store, clock=lambda: now - timedelta(days=1)).save(
            ProfileBuilder().from_frame(reference, "fraud", version, prediction="score"))
    settings = MonitorSettings.model_validate({"drift": {"min_rows": 10},
                                               "slos": [LATENCY_SLO.model_dump()]})
    # three evaluations, the last as of now (everything written above visible to it)
    runner = MonitorRunner(settings, store)
    for moment in (now - timedelta(minutes=10), now - timedelta(minutes=5), datetime.now(UTC)):
        assert runner.run_once(moment).errors == []
    v2 = (("model", "fraud"), ("version", "2"))
    firing_fp, pending_fp = fingerprint(P99_RULE, v2), fingerprint(ERRORS_RULE, v2)
    events = [
        [now - timedelta(minutes=9), now, firing_fp, "fraud-p99", "page", "pending", "fraud",
         "2", 71.0, "fraud p99 over 50 ms",
         {"alertname": "fraud-p99", "model": "fraud", "version": "2"}, "evaluator:a"],
        [now - timedelta(minutes=7), now, firing_fp, "fraud-p99", "page", "firing", "fraud",
         "2", 72.5, "fraud p99 over 50 ms",
         {"alertname": "fraud-p99", "model": "fraud", "version": "2"}, "evaluator:a"],
        [now - timedelta(minutes=3), now, pending_fp, "fraud-errors", "ticket", "pending",
         "fraud", "2", 0.081, "", {"alertname": "fraud-errors", "model": "fraud",
                                   "version": "2"}, "evaluator:a"],
    ]
    store.insert("alert_events", events, EVENT_COLUMNS)
    # a quality result with no version, as the monitor writes for a model that served
    # nothing yet when it ran
    store.insert("monitor_results", [[now - timedelta(minutes=30), now, "quality", "fraud", "",
                                      now - timedelta(minutes=45), now - timedelta(minutes=30),
                                      "roc_auc", None, {}, "no_data", 0, 0, 0.0]],
                 ["ts", "ingest_time", "monitor", "model", "model_version", "window_start",
                  "window_end", "metric", "value", "labels", "status", "window_rows",
                  "sample_size", "coverage"])
    lag = [[now - timedelta(minutes=m), now, "main", "fraud-features", "features", p, 100,
            100 + lagged, lagged, lagged / 10, status, reason]
           for m in (10, 5, 1)
           for p, lagged, status, reason in (
               (0, 0, "OK", ""),
               (1, 5000, "STALL", "committed offset stuck at 100 for 5 samples"))]
    store.insert("kafka_lag", lag, ["ts", "ingest_time", "cluster", "consumer_group", "topic",
                                    "partition", "committed_offset", "log_end_offset",
                                    "lag_messages", "lag_seconds", "status", "reason"])
    TelemetryWriter(store).write_logs([{"model": "fraud"}, "{oops"], "kafka")
    deployments = DeploymentLog(store)
    deployments.record("fraud", "2", "torchserve", "promote", "ok", actor="loop:retrain",
                       reason="gate passed")
    deployments.record("fraud", "2", "torchserve", "verify", "ok", actor="loop:retrain",
                       details={"agreement": 0.93})
    lineage = LineageLog(store)
    for step, status, details in (
            ("alert", "firing", {"labels": {"alertname": "FeatureDrift"}}),
            ("trigger", "accepted", {"kind": "alert"}),
            ("run", "succeeded", {"rows": 2400, "metrics": {"roc_auc": 0.91},
                                  "as_of": (now - timedelta(hours=2)).isoformat()}),
            ("register", "ok", {}),
            ("gate", "passed", {"metric": "roc_auc", "challenger": 0.91, "champion": 0.88,
                                "rows": 800})):
        lineage.record("fraud", "trig-1", step, status, actor="alert:FeatureDrift",
                       version="2" if step in ("register", "gate") else "",
                       details=json.loads(json.dumps(details)))
    return Seeded(now, firing_fp, pending_fp,
                  ConsoleSettings(rules=RULES, slos=(LATENCY_SLO,), api_url=api_url,
                                  models=("fraud",)))
