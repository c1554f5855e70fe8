"""How fast the demo's story unfolds: a pace for a person watching, and one for CI.

Every window the loop depends on is scaled together. The alert waits ``alert_for`` of
sustained drift before it fires, so that the retraining's window (``train_window`` ending
``holdout`` before the trigger) and the gate's holdout both hold only drifted traffic: a
challenger trained on the world as it is now, judged on rows it was not trained on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pace:
    """The demo's timings, in seconds unless named otherwise."""

    name: str
    warm_up_s: float  # traffic before drift is injected
    requests_per_s: float  # requests through the serving backend
    instances_per_request: int
    label_delay_s: float  # ground truth arrives this long after the prediction
    history_rows: int  # labelled pre-drift transactions the first version is trained on
    monitor_interval: str
    drift_window: str
    quality_window: str
    alert_for: str  # drift must persist this long before the alert fires
    train_window: str
    holdout: str
    min_fresh_labels: int
    cooldown: str  # shorter than bootstrap to alert: the first version's run starts it
    gate_min_rows: int
    features_per_s: float  # feature-pipeline events produced
    pipeline_stall_s: float  # the pipeline's consumer pauses this long every so often
    console_refresh: str

    @property
    def records_per_s(self) -> float:
        return self.requests_per_s * self.instances_per_request


FAST = Pace(
    name="fast", warm_up_s=30, requests_per_s=8, instances_per_request=5, label_delay_s=3,
    history_rows=3000, monitor_interval="5s", drift_window="1m", quality_window="2m",
    alert_for="40s", train_window="60s", holdout="20s", min_fresh_labels=300,
    cooldown="1m", gate_min_rows=150, features_per_s=40, pipeline_stall_s=8,
    console_refresh="10s")

WATCHED = Pace(
    name="watched", warm_up_s=180, requests_per_s=8, instances_per_request=5,
    label_delay_s=10, history_rows=6000, monitor_interval="15s", drift_window="2m",
    quality_window="5m", alert_for="2m", train_window="90s", holdout="30s",
    min_fresh_labels=1000, cooldown="3m", gate_min_rows=300, features_per_s=40,
    pipeline_stall_s=20, console_refresh="10s")
