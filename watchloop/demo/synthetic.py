"""Synthetic marketplace traffic for ``watchloop demo``: three models, delayed labels, a few
malformed records, and a slow drift in one feature so the monitors have something to see."""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections import deque
from typing import Any

from drift import ProfileBuilder, ProfileRepository
from drift.settings import MonitorSettings
from telemetry import Store, TelemetryWriter
from telemetry.clock import utc_now

DEMO_MODELS = {"fraud": ["1", "2"], "recs": ["7"], "trust-safety": ["3"]}


class DemoTraffic:
    """Writes a few hundred inference logs a second, and their labels a little later."""

    name = "demo-traffic"

    def __init__(
        self,
        writer: TelemetryWriter,
        *,
        rate_per_s: float = 200,
        label_delay_s: float = 30,
        seed: int = 7,
    ) -> None:
        self._writer = writer
        self._rate = rate_per_s
        self._label_delay = label_delay_s
        self._random = random.Random(seed)
        self._pending_labels: deque[tuple[float, dict]] = deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)
        self._started_at = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            batch = [self._record() for _ in range(int(self._rate))]
            if self._random.random() < 0.2:
                batch.append({"model": "fraud", "latency_ms": "fast"})  # malformed on purpose
            self._writer.write_logs(batch, "demo")
            self._release_labels()

    def training_frame(self, rows: int = 5000) -> Any:
        """Training-time data without drift: features, the model's score and the label."""
        import pandas as pd

        rnd = random.Random(1)
        samples = []
        for _ in range(rows):
            features, score = _sample(rnd, drift=0.0)
            samples.append({**features, "prediction": score, "label": int(rnd.random() < score)})
        return pd.DataFrame(samples)

    def _record(self) -> dict:
        rnd = self._random
        model = rnd.choice(list(DEMO_MODELS))
        version = rnd.choice(DEMO_MODELS[model])
        minutes = (time.monotonic() - self._started_at) / 60
        drift = min(minutes / 10, 1.5) if model == "fraud" else 0.0
        features, score = _sample(rnd, drift)
        slow = version == "2" and rnd.random() < 0.05
        record = {
            "request_id": uuid.uuid4().hex,
            "model": model,
            "version": version,
            "event_time": utc_now().isoformat(),
            "latency_ms": rnd.lognormvariate(1.2, 0.4) * (8 if slow else 1),
            "status": "error" if rnd.random() < 0.003 else "ok",
            "features": features,
            "prediction": score,
        }
        if rnd.random() < 0.3:
            label = int(rnd.random() < score)
            self._pending_labels.append((time.monotonic() + self._label_delay, {
                "request_id": record["request_id"], "label": label,
                "label_time": utc_now().isoformat()}))
        return record

    def _release_labels(self) -> None:
        due = []
        now = time.monotonic()
        while self._pending_labels and self._pending_labels[0][0] <= now:
            due.append(self._pending_labels.popleft()[1])
        if due:
            self._writer.write_labels(due, "demo")


def _sample(rnd: random.Random, drift: float) -> tuple[dict, float]:
    """One request's features and score; ``drift`` shifts amounts up and countries to BR."""
    amount = math.exp(rnd.gauss(3 + drift, 1))
    score = 1 / (1 + math.exp(-(amount / 60 - 2 + rnd.gauss(0, 1))))
    features = {
        "amount": round(amount, 2),
        "account_age_days": rnd.randint(0, 3000),
        "country": rnd.choices(["DE", "FR", "US", "BR"], [5, 3, 2, 1 + drift * 4])[0],
    }
    return features, round(score, 4)


class DemoProfiles:
    """Registers a reference profile per demo model version, from drift-free training data."""

    name = "demo-profiles"

    def __init__(self, store: Store, traffic: DemoTraffic) -> None:
        self._store = store
        self._traffic = traffic

    def start(self) -> None:
        frame = self._traffic.training_frame()
        builder = ProfileBuilder()
        repository = ProfileRepository(self._store)
        for model, versions in DEMO_MODELS.items():
            for version in versions:
                repository.save(builder.from_frame(frame, model, version,
                                                   prediction="prediction", label="label"))

    def stop(self) -> None:
        pass


def demo_monitor_settings() -> MonitorSettings:
    """Monitors tuned for a demo that lasts minutes: short windows, frequent runs."""
    return MonitorSettings.model_validate({
        "interval": "15s",
        "drift": {"window": "5m", "min_rows": 50},
        "quality": {"window": "15m"},
        "latency": {"window": "5m"},
        "slos": [
            {"name": "fraud-latency", "model": "fraud", "kind": "latency",
             "objective": 0.99, "threshold_ms": 20},
            {"name": "availability", "kind": "availability", "objective": 0.999},
        ],
    })
