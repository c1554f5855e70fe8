"""The Triton 2.51 adapter: write the repository entry, load with a version-policy override.

A request without a version goes to the highest loaded version, so a candidate cannot be
loaded beside the serving version under the model's own name without taking its traffic.
It is warmed under a staging name instead (``<model>__candidate``, the same files), and
promotion reloads the model with ``version_policy: specific [N]``: Triton loads N, moves
the traffic, and unloads the old version once its in-flight requests are done (STACK.md:
unload-then-load drops everything in between). Rolling back reloads the previous version,
whose files stay in the repository until it is retired.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .base import Health, ModelPackage, Prediction, VersionInfo, VersionStats
from .bundle import write_version_files
from .errors import PredictionError, ServingError
from .http import HttpClient, message_of
from .settings import TritonSettings

__all__ = ["TritonAdapter", "candidate_name", "model_config"]

CANDIDATE_SUFFIX = "__candidate"


def candidate_name(model: str) -> str:
    """The staging name a candidate version is warmed under."""
    return f"{model}{CANDIDATE_SUFFIX}"


def model_config(name: str, version: int, instances: int) -> dict[str, Any]:
    """The model configuration (as Triton's JSON) pinning one version."""
    return {
        "name": name,
        "backend": "python",
        "max_batch_size": 0,
        "version_policy": {"specific": {"versions": [version]}},
        "input": [
            {"name": "INSTANCES", "data_type": "TYPE_STRING", "dims": [-1], "optional": True},
            {"name": "FEATURES", "data_type": "TYPE_FP32", "dims": [-1, -1], "optional": True},
            {"name": "REQUEST_ID", "data_type": "TYPE_STRING", "dims": [-1], "optional": True},
        ],
        "output": [
            {"name": "SCORE", "data_type": "TYPE_FP32", "dims": [-1]},
            {"name": "REQUEST_ID", "data_type": "TYPE_STRING", "dims": [-1]},
        ],
        "instance_group": [{"kind": "KIND_CPU", "count": instances}],
    }


def _pbtxt(config: dict[str, Any]) -> str:
    """The same configuration as config.pbtxt (protobuf text accepts JSON-like values)."""
    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{ " + " ".join(f"{k}: {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[ " + ", ".join(value(x) for x in v) + " ]"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str) and not v.startswith(("TYPE_", "KIND_")):
            return json.dumps(v)
        return str(v)
    return "".join(f"{k}: {value(v)}\n" for k, v in config.items())


class TritonAdapter:
    """A ``ServingAdapter`` over Triton's KServe v2 HTTP API and its model repository."""

    backend = "triton"

    def __init__(self, settings: TritonSettings, *, http: HttpClient | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.http = http or HttpClient("Triton", settings.timeout_s)
        self._sleep = sleep

    @property
    def address(self) -> str:
        return self.settings.url

    @property
    def repository(self) -> Path:
        return self.settings.repository

    # -- reading ------------------------------------------------------------------------

    def health(self) -> Health:
        # /v2/health/ready is false while any model in the repository is unloaded, which is
        # normal in explicit mode: the server is healthy when it is live.
        url = f"{self.settings.url}/v2/health/live"
        try:
            response = self.http.call("GET", url, expect=(200, 400, 503))
        except ServingError as exc:
            return Health(False, str(exc), url)
        ok = response.status_code == 200
        return Health(ok, "live" if ok else f"not live ({response.status_code})", url)

    def models(self) -> list[str]:
        names = {entry["name"] for entry in self._index()}
        names |= {p.parent.name for p in self.repository.glob("*/config.pbtxt")}
        return sorted(n for n in names if not n.endswith(CANDIDATE_SUFFIX))

    def versions(self, model: str) -> list[VersionInfo]:
        loaded = {str(e.get("version", "")): e for e in self._index() if e["name"] == model}
        candidate = self._candidate(model)
        serving = self.serving_version(model)
        found: dict[str, VersionInfo] = {}
        for directory in sorted((self.repository / model).glob("[0-9]*"), key=_number):
            version = directory.name
            entry = loaded.get(version)
            if entry and entry.get("state") == "READY":
                found[version] = VersionInfo(version, "ready", version == serving)
            elif version == candidate:
                found[version] = VersionInfo(version, "ready", False, "warming as candidate")
            else:
                reason = (entry or {}).get("reason", "") or "not loaded"
                found[version] = VersionInfo(version, "on_disk", False, reason)
        return list(found.values())

    def serving_version(self, model: str) -> str | None:
        response = self.http.call("GET", f"{self.settings.url}/v2/models/{model}",
                                  expect=(200, 400, 404))
        if response.status_code != 200:
            return None
        ready = [v for v in response.json().get("versions", [])
                 if self._ready(model, v)]
        return max(ready, key=_number) if ready else None

    def stats(self, model: str, version: str) -> VersionStats:
        name = model if self.serving_version(model) == version else candidate_name(model)
        body = self.http.call(
            "GET", f"{self.settings.url}/v2/models/{name}/versions/{version}/stats").json()
        stats = (body.get("model_stats") or [{}])[0].get("inference_stats", {})
        ok = int(stats.get("success", {}).get("count", 0))
        failed = int(stats.get("fail", {}).get("count", 0))
        ns = float(stats.get("success", {}).get("ns", 0))
        return VersionStats(ok + failed, failed, ns / ok / 1e6 if ok else None)

    # -- changing -----------------------------------------------------------------------

    def deploy(self, package: ModelPackage) -> None:
        number = _version_number(package.version)
        model_dir = self.repository / package.model
        target = model_dir / str(number)
        if target.exists():
            raise ServingError(f"Triton repository {self.repository} already has "
                               f"{package.model} version {number}; retire it first")
        write_version_files(package, target, "triton_model.py", "model.py")
        config = model_config(package.model, number, self.settings.instances)
        if not (model_dir / "config.pbtxt").exists():
            (model_dir / "config.pbtxt").write_text(_pbtxt(config))
        # Stage the candidate under its own name, with a copy of the version directory.
        staging = self.repository / candidate_name(package.model)
        self._unload(candidate_name(package.model))
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(target, staging / str(number))
        staged = {**config, "name": candidate_name(package.model)}
        (staging / "config.pbtxt").write_text(_pbtxt(staged))
        try:
            self._load(candidate_name(package.model), staged)
        except ServingError:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(target, ignore_errors=True)
            raise

    def predict(self, model: str, instances: Sequence[dict[str, Any]],
                version: str | None = None) -> Prediction:
        # A staged version is never the serving one: promotion removes the staging entry.
        staged = version is not None and version == self._candidate(model)
        name = candidate_name(model) if staged else model
        ids = [str(x.get("request_id") or uuid.uuid4().hex) for x in instances]
        encoded = [json.dumps({"request_id": rid, "features": x.get("features")})
                   for rid, x in zip(ids, instances, strict=True)]
        path = f"{name}/versions/{version}" if version else name
        url = f"{self.settings.url}/v2/models/{path}/infer"
        body = {"inputs": [
            {"name": "INSTANCES", "datatype": "BYTES", "shape": [len(ids)], "data": encoded},
        ]}
        started = time.perf_counter()
        try:
            response = self.http.session.post(url, json=body, timeout=self.settings.timeout_s)
        except Exception as exc:  # noqa: BLE001 - a failed request is a failed prediction
            raise PredictionError(f"Triton at {url}: {exc}") from exc
        latency_ms = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise PredictionError(f"Triton at {url} answered {response.status_code}: "
                                  f"{message_of(response)}", response.status_code)
        answer = response.json()
        outputs = {o["name"]: o["data"] for o in answer.get("outputs", [])}
        return Prediction(str(answer["model_version"]), [float(s) for s in outputs["SCORE"]],
                          [str(r) for r in outputs.get("REQUEST_ID", ids)], latency_ms)

    def promote(self, model: str, version: str) -> None:
        number = _version_number(version)
        if not (self.repository / model / str(number)).is_dir():
            raise ServingError(f"{model} version {version} is not in the Triton repository "
                               f"{self.repository}: deploy it first")
        self._load(model, model_config(model, number, self.settings.instances))
        if self._candidate(model) == version:
            self._unload(candidate_name(model))
            shutil.rmtree(self.repository / candidate_name(model), ignore_errors=True)

    def drain(self, model: str, version: str) -> None:
        # Triton unloads the previous version itself once its in-flight requests are done.
        deadline = time.monotonic() + self.settings.load_timeout_s
        while time.monotonic() < deadline:
            if not self._ready(model, version):
                return
            self._sleep(0.05)
        raise ServingError(f"Triton at {self.address} still serves {model} version {version} "
                           f"{self.settings.load_timeout_s:g} s after the swap")

    def retire(self, model: str, version: str) -> None:
        if self.serving_version(model) == version:
            raise ServingError(f"{model} version {version} is serving on Triton at "
                               f"{self.address}: promote another version before retiring it")
        if self._candidate(model) == version:
            self._unload(candidate_name(model))
            shutil.rmtree(self.repository / candidate_name(model), ignore_errors=True)
        shutil.rmtree(self.repository / model / str(_version_number(version)), ignore_errors=True)

    def close(self) -> None:
        self.http.close()

    # -- helpers ------------------------------------------------------------------------

    def _index(self) -> list[dict[str, Any]]:
        return self.http.call("POST", f"{self.settings.url}/v2/repository/index",
                              json={}).json()

    def _ready(self, model: str, version: str) -> bool:
        response = self.http.call(
            "GET", f"{self.settings.url}/v2/models/{model}/versions/{version}/ready",
            expect=(200, 400, 404))
        return response.status_code == 200

    def _candidate(self, model: str) -> str | None:
        staged = [p.name for p in (self.repository / candidate_name(model)).glob("[0-9]*")]
        return staged[0] if staged else None

    def _load(self, name: str, config: dict[str, Any]) -> None:
        self.http.call("POST", f"{self.settings.url}/v2/repository/models/{name}/load",
                       json={"parameters": {"config": json.dumps(config)}},
                       timeout_s=self.settings.load_timeout_s)

    def _unload(self, name: str) -> None:
        self.http.call("POST", f"{self.settings.url}/v2/repository/models/{name}/unload",
                       json={}, expect=(200, 400, 404))


def _number(version: str | Path) -> int:
    name = version.name if isinstance(version, Path) else version
    return int(name) if str(name).isdigit() else -1


def _version_number(version: str) -> int:
    if not version.isdigit() or int(version) < 1:
        raise ServingError(f"Triton versions are positive integers (a directory per version); "
                           f"got {version!r}")
    return int(version)
