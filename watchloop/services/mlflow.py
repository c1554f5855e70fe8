"""An MLflow tracking server with a sqlite store and artifacts served from the workdir."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from watchloop.services.base import ServiceProcess, free_port, http_ready

__all__ = ["MlflowServer"]


class MlflowServer(ServiceProcess):
    """``mlflow server`` on a free loopback port, one worker, background jobs off.

    Runs, models and the registry live in ``<workdir>/mlflow.db`` (or the given backend
    store, such as a ``PostgresServer`` database); artifacts are proxied by
    the server (``mlflow-artifacts:/``) into ``<workdir>/artifacts``.
    """

    name = "mlflow"

    def __init__(self, workdir: Path, *, port: int | None = None, workers: int = 1,
                 backend_store_uri: str | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port(self.host)
        self.workers = workers
        # sqlite by default; a PostgreSQL URL (postgresql://...) as teams run it
        self.backend_store_uri = backend_store_uri or f"sqlite:///{self.workdir / 'mlflow.db'}"
        self.artifacts_destination = self.workdir / "artifacts"

    @classmethod
    def available(cls) -> str | None:
        """None if mlflow is installed, else how to install it."""
        if importlib.util.find_spec("mlflow") is None:
            return "mlflow not found: pip install 'watchloop[feedback]'"
        return None

    @property
    def tracking_uri(self) -> str:
        """``http://host:port`` for ``mlflow.set_tracking_uri`` / ``MlflowClient``."""
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        return self.tracking_uri

    def prepare(self) -> None:
        self.artifacts_destination.mkdir(parents=True, exist_ok=True)

    def environment(self) -> dict[str, str]:
        # Job execution starts a huey consumer per server: memory and CPU we do not need.
        return {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--backend-store-uri",
            self.backend_store_uri,
            "--serve-artifacts",
            "--artifacts-destination",
            str(self.artifacts_destination),
        ]

    def is_ready(self) -> bool:
        return http_ready(f"{self.tracking_uri}/health")
