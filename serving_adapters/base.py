"""The one interface every serving backend implements, and the values it speaks in.

A version goes through: ``deploy`` (packaged and loaded beside the serving one, taking no
traffic), ``predict(version=...)`` to warm and verify it, ``promote`` (it takes the traffic
of the model's default route), ``drain`` (the previous version finishes what it has in
flight), and later ``retire`` (unloaded, its files removed). Rolling back is promoting the
previous version again while it is still deployed or on disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Health",
    "ModelPackage",
    "Prediction",
    "ServingAdapter",
    "VersionInfo",
    "VersionStats",
]


@dataclass(frozen=True)
class ModelPackage:
    """A version to deploy: a TorchScript file scoring ``[n, len(features)]`` floats, and
    where the server should publish its payload logs (``payload_log``, None for nowhere)."""

    model: str
    version: str
    model_file: Path
    features: tuple[str, ...]
    payload_log: dict[str, Any] | None = None


@dataclass(frozen=True)
class VersionInfo:
    """A version as the server sees it. ``state``: ``ready``, ``loading``, ``unavailable``
    (loaded but failing), or ``on_disk`` (packaged, not loaded)."""

    version: str
    state: str
    serving: bool
    detail: str = ""


@dataclass(frozen=True)
class Prediction:
    """One answered request: which version answered, its scores and the request ids."""

    version: str
    scores: list[float]
    request_ids: list[str]
    latency_ms: float


@dataclass(frozen=True)
class VersionStats:
    """What the server counted for one version since it was loaded."""

    requests: int
    failures: int
    mean_latency_ms: float | None = None


@dataclass(frozen=True)
class Health:
    """Whether the server answers, and what it said."""

    ok: bool
    detail: str
    address: str
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class ServingAdapter(Protocol):
    """A model server Watchloop deploys to: TorchServe or Triton."""

    backend: str  # "torchserve" or "triton": the ``server`` of deployment rows

    @property
    def address(self) -> str:
        """Where the server is, for messages and deployment rows."""
        ...

    def health(self) -> Health:
        """Whether the server is up and ready."""
        ...

    def models(self) -> list[str]:
        """Names of the models the server holds."""
        ...

    def versions(self, model: str) -> list[VersionInfo]:
        """The model's versions with their state; empty if the server has no such model."""
        ...

    def serving_version(self, model: str) -> str | None:
        """The version the model's default route answers with, or None."""
        ...

    def deploy(self, package: ModelPackage) -> None:
        """Package and load a version beside the serving one; it takes no traffic yet."""
        ...

    def predict(self, model: str, instances: Sequence[dict[str, Any]],
                version: str | None = None) -> Prediction:
        """Score instances (``{"request_id", "features"}``) on one version, or on the default
        route; raises ``PredictionError`` when the server answers with an error."""
        ...

    def promote(self, model: str, version: str) -> None:
        """Make a deployed version take the default route's traffic, without dropping any."""
        ...

    def drain(self, model: str, version: str) -> None:
        """Wait until a version that lost the traffic has finished its in-flight requests."""
        ...

    def retire(self, model: str, version: str) -> None:
        """Unload a version that takes no traffic, and remove its packaged files."""
        ...

    def stats(self, model: str, version: str) -> VersionStats:
        """The server's own counts for one version."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
