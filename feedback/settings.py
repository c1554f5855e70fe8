"""The ``feedback:`` section: when retraining may start, how it trains, how it is judged.

Shape (YAML, every key optional)::

    feedback:
      redis_url: redis://127.0.0.1:6379/0   # the policy's shared state
      mlflow: {tracking_uri: http://127.0.0.1:5000, experiment: watchloop}
      policy: {cooldown: 1h, daily_budget: 6, lease: 60s, min_fresh_labels: 500}
      training:
        entrypoint: feedback.demo_model:train   # module:function, or
        # command: [python, train.py]           # a command (see feedback.runner)
        timeout: 10m
        window: 7d        # rows trained on: [as_of - holdout - window, as_of - holdout)
        holdout: 1h       # the most recent rows, kept for the gate
        params: {epochs: 30}
      gate: {metric: roc_auc, min_absolute_improvement: 0.0, min_relative_improvement: 0.0,
             min_rows: 200}
      models:             # per-model overrides of training, gate and policy
        fraud: {schedule: 24h, gate: {metric: log_loss}}
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drift.settings import Duration

__all__ = [
    "GREATER_IS_BETTER",
    "FeedbackSettings",
    "GateSettings",
    "MlflowSettings",
    "ModelFeedbackSettings",
    "PolicySettings",
    "TrainingSettings",
]

# The gate's metrics, and whether a larger value is better (as MLflow's MetricThreshold).
GREATER_IS_BETTER = {"roc_auc": True, "accuracy": True, "f1": True, "precision": True,
                     "recall": True, "log_loss": False, "mae": False, "rmse": False}
Metric = Literal["roc_auc", "accuracy", "f1", "precision", "recall", "log_loss", "mae", "rmse"]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MlflowSettings(_Settings):
    """Where runs and registered versions go. ``tracking_uri`` None: a sqlite file under the
    data directory (``sqlite:///<data_dir>/mlflow/mlflow.db``)."""

    tracking_uri: str | None = None
    experiment: str = "watchloop"
    # Where the runs' artifacts go when Watchloop creates the experiment (None: MLflow's
    # default, which for a server is the server's artifact store).
    artifact_location: str | None = None


class PolicySettings(_Settings):
    """When a trigger may start a run; the state is in Redis, shared by every process."""

    cooldown: Duration = timedelta(hours=1)
    daily_budget: Annotated[int, Field(ge=0)] = 6
    # How long a run may hold its model's slot without renewing it: a crashed runner's
    # slot frees itself after this long.
    lease: Duration = timedelta(seconds=60)
    min_fresh_labels: Annotated[int, Field(ge=0)] = 500


class TrainingSettings(_Settings):
    """What trains a new version, and on which rows."""

    entrypoint: str | None = "feedback.demo_model:train"
    command: tuple[str, ...] | None = None
    timeout: Duration = timedelta(minutes=10)
    window: Duration = timedelta(days=7)
    holdout: Duration = timedelta(hours=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_entrypoint(self) -> TrainingSettings:
        if self.command:
            if self.entrypoint not in (None, TrainingSettings.model_fields["entrypoint"].default):
                raise ValueError("set either entrypoint or command, not both")
            return self
        if not self.entrypoint or ":" not in self.entrypoint:
            raise ValueError("entrypoint must be module:function (or set command)")
        return self

    @property
    def uses_command(self) -> bool:
        return bool(self.command)


class GateSettings(_Settings):
    """Challenger vs champion on the newest labelled rows the challenger was not trained on,
    in the manner of MLflow's ``MetricThreshold``."""

    metric: Metric = "roc_auc"
    min_absolute_improvement: Annotated[float, Field(ge=0)] = 0.0
    min_relative_improvement: Annotated[float, Field(ge=0)] = 0.0
    threshold: float | None = None  # the challenger must also reach this value
    min_rows: Annotated[int, Field(ge=1)] = 200
    decision_threshold: Annotated[float, Field(ge=0, le=1)] = 0.5
    positive_label: str = "1"

    @property
    def greater_is_better(self) -> bool:
        return GREATER_IS_BETTER[self.metric]


class ModelFeedbackSettings(_Settings):
    """Per-model overrides; ``schedule`` retrains every so often (None: never by schedule)."""

    schedule: Duration | None = None
    training: TrainingSettings | None = None
    gate: GateSettings | None = None
    policy: PolicySettings | None = None


class FeedbackSettings(_Settings):
    """Everything the feedback loop needs, with per-model overrides."""

    redis_url: str = Field("redis://127.0.0.1:6379/0", pattern=r"^(rediss?|unix)://")
    prefix: str = "watchloop"
    mlflow: MlflowSettings = MlflowSettings()
    policy: PolicySettings = PolicySettings()
    training: TrainingSettings = TrainingSettings()
    gate: GateSettings = GateSettings()
    models: dict[str, ModelFeedbackSettings] = Field(default_factory=dict)
    # How often the registry is polled for a champion alias moved by hand (0: never).
    alias_poll: Duration = timedelta(seconds=15)
    # Deploy a promoted version without the post-deploy watch (tests, demos).
    watch: bool = True
    run_dir: str | None = None  # where runs keep their data and logs (None: data_dir/runs)

    def for_model(self, model: str) -> tuple[PolicySettings, TrainingSettings, GateSettings]:
        """The policy, training and gate settings of ``model``, overrides applied."""
        override = self.models.get(model) or ModelFeedbackSettings()
        return (override.policy or self.policy, override.training or self.training,
                override.gate or self.gate)

    def schedules(self) -> dict[str, timedelta]:
        """Models retrained on a schedule, and how often."""
        return {name: m.schedule for name, m in self.models.items() if m.schedule}


def metric_sign(greater_is_better: bool) -> Literal[1, -1]:
    """+1 when larger values are better, else -1."""
    return 1 if greater_is_better else -1
