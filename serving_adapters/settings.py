"""The ``serving:`` section: which server, how a swap is verified, watched, and logged.

The backend is picked by ``type:`` (``torchserve`` or ``triton``), like every other backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from telemetry.problems import raise_at

__all__ = [
    "AnalysisSettings",
    "BackendSettings",
    "PayloadLogSettings",
    "ServingSettings",
    "TorchServeSettings",
    "TritonSettings",
    "VerifySettings",
]

_Url = Annotated[str, Field(pattern=r"^https?://")]
_Positive = Annotated[float, Field(gt=0)]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TorchServeSettings(_Settings):
    """A TorchServe 0.12 server whose model store this process can write to."""

    type: Literal["torchserve"] = "torchserve"
    inference_url: _Url = "http://127.0.0.1:8080"
    management_url: _Url = "http://127.0.0.1:8081"
    metrics_url: _Url | None = "http://127.0.0.1:8082/metrics"
    model_store: Path = Path("model-store")  # the server's --model-store, shared with it
    workers: Annotated[int, Field(ge=1)] = 1
    # How long a version that lost the traffic keeps answering before it may be unloaded:
    # unregistering right after set-default lost in-flight requests (STACK.md).
    drain_s: Annotated[float, Field(ge=0)] = 1.0
    timeout_s: _Positive = 10.0
    register_timeout_s: _Positive = 180.0
    token: SecretStr | None = None  # the management API token, if the server requires one


class TritonSettings(_Settings):
    """A Triton server in explicit model-control mode whose repository this process writes."""

    type: Literal["triton"]
    url: _Url = "http://127.0.0.1:8000"
    metrics_url: _Url | None = "http://127.0.0.1:8002/metrics"
    repository: Path = Path("model-repository")  # the server's --model-repository
    instances: Annotated[int, Field(ge=1)] = 1
    timeout_s: _Positive = 10.0
    load_timeout_s: _Positive = 180.0


BackendSettings = Annotated[TorchServeSettings | TritonSettings, Field(discriminator="type")]


class VerifySettings(_Settings):
    """The warm-up a version must pass before it takes traffic."""

    warmup_requests: Annotated[int, Field(ge=1)] = 20
    batch_size: Annotated[int, Field(ge=1)] = 1  # instances per warm-up request
    latency_budget_ms: _Positive = 100.0  # p99 of the warm-up requests
    score_min: float | None = 0.0  # every score within [score_min, score_max]
    score_max: float | None = 1.0
    # Replay the features of the model's last N logged requests (point-in-time) to the
    # candidate and the serving version; 0 turns it off.
    replay_requests: Annotated[int, Field(ge=0)] = 200
    replay_window_s: _Positive = 3600.0
    decision_threshold: float = 0.5  # two scores agree when on the same side of it
    min_agreement: Annotated[float, Field(ge=0, le=1)] | None = None  # refuse below it
    max_mean_shift: Annotated[float, Field(ge=0)] | None = None  # refuse above |shift|

    @model_validator(mode="after")
    def _range(self) -> VerifySettings:
        if self.score_min is not None and self.score_max is not None \
                and self.score_min > self.score_max:
            raise_at(type(self).__name__, [(("score_max",), "must be at least score_min",
                                            self.score_max)])
        return self


class AnalysisSettings(_Settings):
    """The post-deploy watch (as in Flagger / Argo Rollouts): every ``interval_s`` a check of
    the new version against the previous one's baseline; ``failure_limit`` failed checks roll
    it back; ``checks`` passed (or without enough traffic) complete it."""

    enabled: bool = True
    interval_s: _Positive = 10.0
    checks: Annotated[int, Field(ge=1)] = 6
    failure_limit: Annotated[int, Field(ge=1)] = 2
    min_requests: Annotated[int, Field(ge=1)] = 20  # per check; fewer is inconclusive
    baseline_window_s: _Positive = 600.0  # the previous version's logs before promotion
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.05
    # p99 may grow to ``max(baseline * max_p99_ratio, baseline + latency_slack_ms)``
    max_p99_ratio: Annotated[float, Field(ge=1)] = 2.0
    latency_slack_ms: Annotated[float, Field(ge=0)] = 20.0
    max_p99_ms: _Positive | None = None  # an absolute ceiling, baseline or not
    max_prediction_psi: Annotated[float, Field(ge=0)] = 0.25
    # After a swap, keep the version it replaced deployed (idle) so a rollback is instant;
    # versions older than it are retired. False retires it too.
    keep_previous: bool = True


class PayloadLogSettings(_Settings):
    """Where our handler / model.py publish each request's inference log; a collector
    source (``collectors.sources``) reads the same stream or topic into the store."""

    type: Literal["redis", "kafka"]
    # redis://host:6379/0 or kafka://host:9092[,host2:9092]; a password belongs in the
    # server's environment (WATCHLOOP_PAYLOAD_LOG_URL), never in a packaged model
    url: Annotated[str, Field(pattern=r"^(rediss?|kafka)://")]
    target: str = Field("watchloop:logs", min_length=1)  # stream or topic
    batch_size: Annotated[int, Field(ge=1)] = 200
    flush_ms: Annotated[int, Field(ge=1)] = 200
    queue_size: Annotated[int, Field(ge=1)] = 10_000

    @model_validator(mode="after")
    def _scheme(self) -> PayloadLogSettings:
        expected = "kafka://" if self.type == "kafka" else "redis"
        if not self.url.startswith(expected):
            raise_at(type(self).__name__, [(("url",), f"a {self.type} URL ({expected}...)",
                                            self.url)])
        return self

    def server_config(self) -> dict[str, object]:
        """What the server-side logger reads (``payload_log.PayloadLogConfig``)."""
        return {"kind": self.type, "url": self.url, "target": self.target,
                "batch_size": self.batch_size, "flush_ms": self.flush_ms,
                "queue_size": self.queue_size}


class ServingSettings(_Settings):
    """The whole ``serving:`` section."""

    backend: BackendSettings = Field(default_factory=TorchServeSettings)
    verify: VerifySettings = Field(default_factory=VerifySettings)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    payload_log: PayloadLogSettings | None = None
