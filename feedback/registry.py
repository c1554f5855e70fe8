"""The MLflow side of the loop: runs, registered versions, aliases and tags.

A run logs its params (the training params, the data window and the rows' checksum), its
metrics, the model as TorchScript through MLflow's PyTorch flavour (with ``pip_requirements``
given, so that logging takes under a second instead of inferring requirements in a
subprocess), the training log and the version's reference profile. The registered version
carries the features in its input order (tag ``watchloop.features``) and what the gate found
(``watchloop.gate.*``); ``champion`` is the serving version, ``challenger`` the newest
candidate. Aliases are read with ``get_registered_model`` (search results do not carry them).
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from telemetry.extras import require

__all__ = ["CHALLENGER", "CHAMPION", "ModelRegistry", "RegistryError"]

log = logging.getLogger("watchloop.feedback.registry")

CHAMPION = "champion"
CHALLENGER = "challenger"
FEATURES_TAG = "watchloop.features"


class RegistryError(RuntimeError):
    """MLflow refused or could not be reached; the message names the tracking URI."""


class ModelRegistry:
    """Runs and versions of every model in one MLflow tracking server (or sqlite file)."""

    def __init__(self, tracking_uri: str, *, experiment: str = "watchloop",
                 artifact_location: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.artifact_location = artifact_location
        mlflow = require("mlflow", "the model registry")
        self._mlflow = mlflow
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._experiment_id: str | None = None

    def _fail(self, what: str, exc: Exception) -> RegistryError:
        return RegistryError(f"MLflow at {self.tracking_uri}: {what}: {exc}")

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            try:
                found = self.client.get_experiment_by_name(self.experiment)
                self._experiment_id = (found.experiment_id if found else
                                       self.client.create_experiment(
                                           self.experiment,
                                           artifact_location=self.artifact_location))
            except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds
                raise self._fail(f"experiment {self.experiment}", exc) from exc
        return self._experiment_id

    # -- runs ---------------------------------------------------------------------------

    def start_run(self, model: str, run_id: str, tags: Mapping[str, str]) -> str:
        """A new MLflow run for Watchloop run ``run_id``; returns MLflow's run id."""
        try:
            run = self.client.create_run(self.experiment_id(), run_name=run_id,
                                         tags={"watchloop.model": model,
                                               "watchloop.run_id": run_id, **tags})
        except Exception as exc:  # noqa: BLE001
            raise self._fail("create run", exc) from exc
        return run.info.run_id

    def log_params(self, mlflow_run: str, params: Mapping[str, Any]) -> None:
        for key, value in params.items():
            self.client.log_param(mlflow_run, key, _short(value))

    def log_metrics(self, mlflow_run: str, metrics: Mapping[str, float]) -> None:
        for key, value in metrics.items():
            if value == value:  # NaN is not a metric MLflow stores well
                self.client.log_metric(mlflow_run, key, float(value))

    def log_artifact(self, mlflow_run: str, path: Path, artifact_path: str | None = None) -> None:
        if path.exists():
            self.client.log_artifact(mlflow_run, str(path), artifact_path)

    def end_run(self, mlflow_run: str, status: str) -> None:
        """``status``: FINISHED, FAILED or KILLED."""
        try:
            self.client.set_terminated(mlflow_run, status=status)
        except Exception as exc:  # noqa: BLE001 - a failed run is already failed
            log.warning("feedback: ending MLflow run %s: %s", mlflow_run, exc)

    def register(self, model: str, mlflow_run: str, model_file: Path,
                 features: tuple[str, ...], tags: Mapping[str, str]) -> str:
        """Log the TorchScript file as the run's model, register it as a new version of
        ``model`` with its features, point ``challenger`` at it; returns the version."""
        torch = require("torch", "the model registry")
        mlflow = self._mlflow
        module = torch.jit.load(str(model_file))
        # TorchScript is saved with torch.jit.save; MLflow warns about pickle regardless
        logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
        try:
            mlflow.set_tracking_uri(self.tracking_uri)
            with mlflow.start_run(run_id=mlflow_run), warnings.catch_warnings():
                # no signature is given: MLflow warns that it cannot validate the input
                warnings.filterwarnings("ignore", message=".*type hint is inferred as AnyType")
                logged = mlflow.pytorch.log_model(
                    module, name="model", serialization_format="pickle",
                    pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
            self._ensure_model(model)
            version = self.client.create_model_version(
                model, logged.model_uri, run_id=mlflow_run, model_id=logged.model_id,
                tags={FEATURES_TAG: ",".join(features), **tags}).version
        except RegistryError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._fail(f"register {model}", exc) from exc
        self.set_alias(model, CHALLENGER, str(version))
        return str(version)

    def _ensure_model(self, model: str) -> None:
        try:
            self.client.create_registered_model(model)
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                raise self._fail(f"create registered model {model}", exc) from exc

    # -- versions and aliases -------------------------------------------------------------

    def alias(self, model: str, alias: str) -> str | None:
        """The version ``alias`` points at, or None."""
        try:
            aliases = self.client.get_registered_model(model).aliases
        except Exception as exc:  # noqa: BLE001
            if _missing(exc):
                return None
            raise self._fail(f"read aliases of {model}", exc) from exc
        found = aliases.get(alias)
        return None if found is None else str(found)

    def set_alias(self, model: str, alias: str, version: str) -> None:
        try:
            self.client.set_registered_model_alias(model, alias, version)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(f"set {alias} of {model} to {version}", exc) from exc

    def tags(self, model: str, version: str) -> dict[str, str]:
        try:
            return dict(self.client.get_model_version(model, version).tags)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(f"read version {version} of {model}", exc) from exc

    def set_tags(self, model: str, version: str, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(model, version, key, _short(value))

    def describe(self, model: str, version: str) -> dict[str, Any]:
        """A version's training run as MLflow holds it: ``params``, ``metrics`` (the newest
        value of each), the version's ``tags`` and the ``run_id``."""
        try:
            found = self.client.get_model_version(model, version)
            run = self.client.get_run(found.run_id)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(f"read version {version} of {model}", exc) from exc
        return {"run_id": found.run_id, "params": dict(run.data.params),
                "metrics": dict(run.data.metrics), "tags": dict(found.tags)}

    def run_of(self, model: str, version: str) -> str:
        return self.client.get_model_version(model, version).run_id

    def features(self, model: str, version: str) -> tuple[str, ...]:
        """The features a version scores, in input order (its ``watchloop.features`` tag)."""
        text = self.tags(model, version).get(FEATURES_TAG, "")
        return tuple(f for f in text.split(",") if f)

    def save_torchscript(self, model: str, version: str, path: Path) -> Path:
        """Download a version's model and save it as a TorchScript file at ``path``."""
        torch = require("torch", "the model registry")
        uri = f"models:/{model}/{version}"
        try:
            with tempfile.TemporaryDirectory(prefix="watchloop-model-") as tmp:
                local = Path(self._mlflow.artifacts.download_artifacts(
                    artifact_uri=uri, dst_path=tmp, tracking_uri=self.tracking_uri))
                try:  # the PyTorch flavour saves a ScriptModule as TorchScript
                    module = torch.jit.load(str(local / "data" / "model.pth"))
                except (RuntimeError, ValueError, OSError):
                    # a pickled nn.Module, registered by someone else: script it
                    self._mlflow.set_tracking_uri(self.tracking_uri)
                    module = torch.jit.script(self._mlflow.pytorch.load_model(str(local)))
        except Exception as exc:  # noqa: BLE001
            raise self._fail(f"load version {version} of {model}", exc) from exc
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.jit.save(module, str(path))
        return path


def _missing(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


def _short(value: Any) -> str:
    """MLflow keeps params and tags up to 6000 characters; JSON for structures."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text[:6000]
