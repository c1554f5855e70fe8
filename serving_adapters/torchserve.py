"""The TorchServe 0.12 adapter: package a ``.mar`` with our handler, register, set-default,
drain, unregister.

TorchServe is archived (0.12 is the last release), so its known faults are worked around
here (STACK.md): a version is unregistered only after it has drained (unregistering right
after ``set-default`` lost in-flight requests); each version gets an archive of its own name
(re-registering a file name can fail with "Model file already exists"); workers are never
scaled down in place (scale-down kills busy workers). Its metrics label requests to the
default route ``model_version="default"``, so per-version counts come from our handler's
own counters (``WatchloopRequests``, ``WatchloopLatencyMs``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from telemetry.promtext import PromTextError, parse_samples

from .base import Health, ModelPackage, Prediction, VersionInfo, VersionStats
from .bundle import build_mar, mar_name
from .errors import PredictionError, ServingError
from .http import HttpClient, message_of
from .settings import TorchServeSettings

__all__ = ["TorchServeAdapter"]


class TorchServeAdapter:
    """A ``ServingAdapter`` over TorchServe's management and inference APIs."""

    backend = "torchserve"

    def __init__(self, settings: TorchServeSettings, *, http: HttpClient | None = None,
                 archiver: str | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        headers = ({"Authorization": f"Bearer {settings.token.get_secret_value()}"}
                   if settings.token else None)
        self.http = http or HttpClient("TorchServe", settings.timeout_s, headers=headers)
        self._archiver = archiver
        self._sleep = sleep

    @property
    def address(self) -> str:
        return self.settings.management_url

    # -- reading ------------------------------------------------------------------------

    def health(self) -> Health:
        url = f"{self.settings.inference_url}/ping"
        try:
            body = self.http.call("GET", url, expect=(200, 500, 503)).json()
        except ServingError as exc:
            return Health(False, str(exc), url)
        status = str(body.get("status", body))
        return Health(status == "Healthy", status, url)

    def models(self) -> list[str]:
        names: list[str] = []
        token: str | None = ""
        while token is not None:
            params: dict[str, Any] = {"limit": 1000}
            if token:
                params["next_page_token"] = token
            body = self.http.call("GET", f"{self.settings.management_url}/models",
                                  params=params).json()
            names += [m["modelName"] for m in body.get("models", [])]
            token = body.get("nextPageToken") or None
        return names

    def versions(self, model: str) -> list[VersionInfo]:
        described = self._describe(f"{model}/all")
        if described is None:
            return []
        serving = self.serving_version(model)
        return [_version_info(d, serving) for d in described]

    def serving_version(self, model: str) -> str | None:
        described = self._describe(model)
        return str(described[0]["modelVersion"]) if described else None

    def stats(self, model: str, version: str) -> VersionStats:
        if not self.settings.metrics_url:
            raise ServingError("TorchServe stats need serving.backend.metrics_url")
        url = self.settings.metrics_url
        try:
            page = parse_samples(self.http.call("GET", url).text)
        except PromTextError as exc:
            raise ServingError(f"TorchServe metrics at {url}: {exc}") from exc
        mine = {"ModelName": model, "ModelVersion": version}
        requests = failures = 0.0
        latency = 0.0
        for sample in page:
            if any(sample.labels.get(k) != v for k, v in mine.items()):
                continue
            if sample.name == "WatchloopRequests":
                requests += sample.value
                if sample.labels.get("Status") != "ok":
                    failures += sample.value
            elif sample.name == "WatchloopLatencyMs":
                latency += sample.value
        return VersionStats(int(requests), int(failures),
                            latency / requests if requests else None)

    # -- changing -----------------------------------------------------------------------

    def deploy(self, package: ModelPackage) -> None:
        if self._describe(f"{package.model}/{package.version}") is not None:
            raise ServingError(f"TorchServe at {self.address} already has {package.model} "
                               f"version {package.version}; retire it first")
        store = self.settings.model_store
        name = build_mar(package, store, self._archiver_path())
        try:
            self.http.call("POST", f"{self.settings.management_url}/models",
                           params={"url": name, "initial_workers": self.settings.workers,
                                   "synchronous": "true"},
                           timeout_s=self.settings.register_timeout_s)
        except ServingError:
            (store / name).unlink(missing_ok=True)
            raise

    def predict(self, model: str, instances: Sequence[dict[str, Any]],
                version: str | None = None) -> Prediction:
        path = f"{model}/{version}" if version else model
        url = f"{self.settings.inference_url}/predictions/{path}"
        started = time.perf_counter()
        try:
            response = self.http.session.post(url, json={"instances": list(instances)},
                                              timeout=self.settings.timeout_s)
        except Exception as exc:  # noqa: BLE001 - a failed request is a failed prediction
            raise PredictionError(f"TorchServe at {url}: {exc}") from exc
        latency_ms = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise PredictionError(f"TorchServe at {url} answered {response.status_code}: "
                                  f"{message_of(response)}", response.status_code)
        body = response.json()
        return Prediction(str(body["version"]), [float(s) for s in body["predictions"]],
                          list(body["request_ids"]), latency_ms)

    def promote(self, model: str, version: str) -> None:
        self.http.call("PUT", f"{self.settings.management_url}/models/{model}/{version}/"
                       "set-default")

    def drain(self, model: str, version: str) -> None:
        # TorchServe answers a request on the version that took it; give those in flight
        # drain_s, then wait for its queue to empty.
        self._sleep(self.settings.drain_s)
        deadline = time.monotonic() + self.settings.timeout_s
        while time.monotonic() < deadline:
            described = self._describe(f"{model}/{version}")
            if not described or not described[0].get("jobQueueStatus", {}).get(
                    "pendingRequests", 0):
                return
            self._sleep(0.1)

    def retire(self, model: str, version: str) -> None:
        if self.serving_version(model) == version:
            raise ServingError(f"{model} version {version} is serving on TorchServe at "
                               f"{self.address}: promote another version before retiring it")
        if self._describe(f"{model}/{version}") is not None:
            self.http.call("DELETE", f"{self.settings.management_url}/models/{model}/{version}",
                           timeout_s=self.settings.register_timeout_s)
        (self.settings.model_store / mar_name(model, version)).unlink(missing_ok=True)

    def close(self) -> None:
        self.http.close()

    # -- helpers ------------------------------------------------------------------------

    def _describe(self, path: str) -> list[dict[str, Any]] | None:
        response = self.http.call("GET", f"{self.settings.management_url}/models/{path}",
                                  expect=(200, 404))
        return None if response.status_code == 404 else response.json()

    def _archiver_path(self) -> str:
        if self._archiver:
            return self._archiver
        import shutil
        import sys
        from pathlib import Path

        beside = Path(sys.executable).parent / "torch-model-archiver"
        found = str(beside) if beside.exists() else shutil.which("torch-model-archiver")
        if not found:
            raise ServingError("torch-model-archiver not found: pip install "
                               "'watchloop[serving]'")
        return found


def _version_info(described: dict[str, Any], serving: str | None) -> VersionInfo:
    version = str(described["modelVersion"])
    workers = described.get("workers", [])
    statuses = [w.get("status", "") for w in workers]
    if statuses and all(s == "READY" for s in statuses):
        state = "ready"
    elif any(s in ("STARTING", "STARTED") for s in statuses):
        state = "loading"
    else:
        state = "unavailable"
    detail = f"{len(workers)} workers: {', '.join(statuses) or 'none'}"
    return VersionInfo(version, state, version == serving, detail)
