"""Helpers for the serving tests: an adapter over each real server, packages, and load."""

from __future__ import annotations

import random
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from serving_adapters import (
    Deployer,
    DeploymentLog,
    ModelPackage,
    ServingAdapter,
    TorchServeAdapter,
    TorchServeSettings,
    TritonAdapter,
    TritonSettings,
    Verifier,
    VerifySettings,
)
from serving_adapters.reference_models import save_scorer
from telemetry import Store
from watchloop.services import TorchServeServer, TritonServer

FEATURES = ("amount", "velocity", "account_age")


def adapter_for(kind: str, request: pytest.FixtureRequest) -> ServingAdapter:
    """An adapter over the session's real TorchServe or Triton."""
    if kind == "torchserve":
        server: TorchServeServer = request.getfixturevalue("torchserve_server")
        return TorchServeAdapter(TorchServeSettings(
            inference_url=server.inference_url, management_url=server.management_url,
            metrics_url=server.metrics_url, model_store=server.model_store, drain_s=1.0,
            timeout_s=30))
    triton: TritonServer = request.getfixturevalue("triton_server")
    return TritonAdapter(TritonSettings(type="triton", url=triton.http_url,
                                        metrics_url=triton.metrics_url,
                                        repository=triton.model_repository, timeout_s=30))


def unique_model(prefix: str = "fraud") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def package(directory: Path, model: str, version: str, payload_log: dict | None = None,
            **degrade: Any) -> ModelPackage:
    """A reference scorer as a version of ``model`` (``degrade``: see ``save_scorer``)."""
    path = save_scorer(directory / f"{model}-{version}.pt", len(FEATURES), **degrade)
    return ModelPackage(model, version, path, FEATURES, payload_log)


def instance(rng: random.Random, request_id: str | None = None) -> dict[str, Any]:
    return {"request_id": request_id or uuid.uuid4().hex,
            "features": {f: rng.random() for f in FEATURES}}


def remove_model(adapter: ServingAdapter, model: str) -> None:
    """Take every version of a test's model off the server, serving one included."""
    if isinstance(adapter, TorchServeAdapter):
        url = adapter.settings.management_url
        for info in adapter.versions(model):
            if not info.serving:
                requests.delete(f"{url}/models/{model}/{info.version}", timeout=60)
        for info in adapter.versions(model):
            requests.delete(f"{url}/models/{model}/{info.version}", timeout=60)
    else:
        base = adapter.settings.url
        for name in (model, f"{model}__candidate"):
            requests.post(f"{base}/v2/repository/models/{name}/unload", json={}, timeout=60)
            # the session's Triton is shared: leave its repository as it was found
            shutil.rmtree(adapter.settings.repository / name, ignore_errors=True)


@contextmanager
def one_version(adapter: ServingAdapter, store: Store, directory: Path,
                payload_log: dict | None = None) -> Iterator[str]:
    """A fresh model serving version 1 (a reference scorer) after a short warm-up; taken off
    the server after the block."""
    model = unique_model()
    warmup = VerifySettings(warmup_requests=3, latency_budget_ms=1000, replay_requests=0)
    deployer = Deployer(adapter, DeploymentLog(store), Verifier(adapter, warmup))
    try:
        result = deployer.deploy(package(directory, model, "1", payload_log), actor="test")
        assert result.outcome == "promoted", result.reason
        yield model
    finally:
        remove_model(adapter, model)


@dataclass
class Answer:
    started: float
    ended: float
    version: str | None  # None when the request failed
    error: str = ""


@dataclass
class Load:
    """Requests sent to a model's default route by background threads."""

    answers: list[Answer] = field(default_factory=list)

    @property
    def failed(self) -> list[Answer]:
        return [a for a in self.answers if a.version is None]

    def between(self, start: float, end: float) -> list[Answer]:
        return [a for a in self.answers if a.started >= start and a.ended <= end]


@contextmanager
def load(adapter: ServingAdapter, model: str, threads: int = 2,
         pause_s: float = 0.0) -> Iterator[Load]:
    """Send requests to ``model``'s default route until the block ends."""
    result = Load()
    stop = threading.Event()
    lock = threading.Lock()

    def send(seed: int) -> None:
        rng = random.Random(seed)
        client = type(adapter)(adapter.settings)  # a session of its own per thread
        while not stop.is_set():
            started = time.monotonic()
            try:
                version: str | None = client.predict(model, [instance(rng)]).version
                error = ""
            except Exception as exc:  # noqa: BLE001 - every failure is recorded
                version, error = None, str(exc)
            with lock:
                result.answers.append(Answer(started, time.monotonic(), version, error))
            if pause_s:
                time.sleep(pause_s)
        client.close()

    workers = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield result
    finally:
        stop.set()
        for worker in workers:
            worker.join(60)
