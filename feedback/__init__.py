"""The feedback loop: retrain triggers under a shared policy, a training runner on
point-in-time data, the MLflow registry, the gate, promotion and rollback, and the lineage
from alert to serving version."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alerts.rules import Rule
from serving_adapters.swap import Deployer
from telemetry.extras import require
from telemetry.store import Store

from .dataset import DataWindow, count_labelled, read_rows, rows_checksum
from .gate import GateResult, evaluate_gate
from .lineage import LineageLog, Retraining
from .loop import FAILED_METRIC, FeedbackLoop, LoopResult
from .policy import Decision, RetrainPolicy
from .registry import CHALLENGER, CHAMPION, ModelRegistry, RegistryError
from .runner import RunResult, TrainingRunner
from .service import FeedbackService
from .settings import FeedbackSettings, GateSettings, PolicySettings, TrainingSettings
from .training import TrainedModel, TrainingSpec

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "FAILED_METRIC",
    "DataWindow",
    "Decision",
    "FeedbackLoop",
    "FeedbackService",
    "FeedbackSettings",
    "GateResult",
    "GateSettings",
    "LineageLog",
    "LoopResult",
    "ModelRegistry",
    "PolicySettings",
    "RegistryError",
    "RetrainPolicy",
    "Retraining",
    "RunResult",
    "TrainedModel",
    "TrainingRunner",
    "TrainingSettings",
    "TrainingSpec",
    "build_loop",
    "count_labelled",
    "evaluate_gate",
    "read_rows",
    "retrain_failed_rule",
    "rows_checksum",
    "tracking_uri",
]


def tracking_uri(settings: FeedbackSettings, data_dir: Path) -> str:
    """The configured MLflow tracking URI, or a sqlite file under the data directory."""
    if settings.mlflow.tracking_uri:
        return settings.mlflow.tracking_uri
    path = (data_dir / "mlflow").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'mlflow.db'}"


def build_loop(settings: FeedbackSettings, store: Store, *, data_dir: Path,
               deployer: Deployer | None, payload_log: dict[str, Any] | None = None,
               redis: Any = None, progress: Callable[[str], None] | None = None
               ) -> FeedbackLoop:
    """A ``FeedbackLoop`` wired from the ``feedback:`` section."""
    redis = redis or require("redis", "the retrain policy").Redis.from_url(settings.redis_url)
    artifacts = settings.mlflow.artifact_location
    if artifacts is None and not settings.mlflow.tracking_uri:
        artifacts = (data_dir / "mlflow" / "artifacts").resolve().as_uri()
    registry = ModelRegistry(tracking_uri(settings, data_dir),
                             experiment=settings.mlflow.experiment, artifact_location=artifacts)
    run_root = Path(settings.run_dir) if settings.run_dir else data_dir / "runs"
    return FeedbackLoop(settings, store, RetrainPolicy(redis, prefix=settings.prefix), registry,
                        deployer, run_root=run_root.resolve(), redis=redis,
                        payload_log=payload_log, progress=progress)


def retrain_failed_rule() -> Rule:
    """``RetrainFailed``: a model's last retraining run failed or timed out (the loop
    writes the ``feedback`` monitor's ``retrain_failed`` series: 1 after a failed run, 0
    after a run that succeeded)."""
    return Rule.model_validate({
        "name": "RetrainFailed", "severity": "ticket", "interval": "1m", "no_data": "ok",
        "annotations": {"summary": "the last retraining run of the model failed; "
                                   "see `watchloop lineage <model>` for its log"},
        "threshold": {"series": {"source": "monitor", "monitor": "feedback",
                                 "metric": FAILED_METRIC, "max_age": "7d"},
                      "op": ">", "value": 0},
    })
