"""Serving adapters: one interface (``ServingAdapter``) over TorchServe and Triton, and the
verified, watched swap (``Deployer``) every change to serving goes through."""

from __future__ import annotations

from collections.abc import Callable

from telemetry.store import Store

from .analysis import AnalysisCheck, AnalysisResult, PostDeployAnalysis
from .base import Health, ModelPackage, Prediction, ServingAdapter, VersionInfo, VersionStats
from .deployments import DeploymentLog
from .errors import (
    PackagingError,
    PredictionError,
    ServingAuthenticationError,
    ServingError,
    ServingUnavailableError,
)
from .observations import RecentRequests
from .settings import (
    AnalysisSettings,
    BackendSettings,
    PayloadLogSettings,
    ServingSettings,
    TorchServeSettings,
    TritonSettings,
    VerifySettings,
)
from .swap import AUTOMATIC_ACTOR, Deployer, SwapResult
from .torchserve import TorchServeAdapter
from .triton import TritonAdapter
from .verify import Check, Verification, Verifier

__all__ = [
    "AUTOMATIC_ACTOR",
    "AnalysisCheck",
    "AnalysisResult",
    "AnalysisSettings",
    "BackendSettings",
    "Check",
    "DeploymentLog",
    "Deployer",
    "Health",
    "ModelPackage",
    "PackagingError",
    "PayloadLogSettings",
    "PostDeployAnalysis",
    "Prediction",
    "PredictionError",
    "RecentRequests",
    "ServingAdapter",
    "ServingAuthenticationError",
    "ServingError",
    "ServingSettings",
    "ServingUnavailableError",
    "SwapResult",
    "TorchServeAdapter",
    "TorchServeSettings",
    "TritonAdapter",
    "TritonSettings",
    "Verification",
    "Verifier",
    "VerifySettings",
    "VersionInfo",
    "VersionStats",
    "build_adapter",
    "build_deployer",
]


def build_adapter(settings: BackendSettings) -> ServingAdapter:
    """The adapter for the configured backend (``serving.backend.type``)."""
    if isinstance(settings, TritonSettings):
        return TritonAdapter(settings)
    return TorchServeAdapter(settings)


def build_deployer(settings: ServingSettings, store: Store, *,
                   adapter: ServingAdapter | None = None,
                   progress: Callable[[str], None] | None = None) -> Deployer:
    """A ``Deployer`` wired from the ``serving:`` section over ``store``."""
    adapter = adapter or build_adapter(settings.backend)
    analysis = (PostDeployAnalysis(store, settings.analysis)
                if settings.analysis.enabled else None)
    return Deployer(adapter, DeploymentLog(store),
                    Verifier(adapter, settings.verify, RecentRequests(store)), analysis,
                    keep_previous=settings.analysis.keep_previous, progress=progress)
