"""TorchServe 0.12: the Java frontend launched by the ``torchserve`` script, in the foreground."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from watchloop.services.base import ServiceProcess, free_port, http_ready, venv_bin

__all__ = ["TorchServeServer"]


class TorchServeServer(ServiceProcess):
    """TorchServe with inference, management and Prometheus metrics on free loopback ports.

    ``model_store`` defaults to ``<workdir>/model-store``. Extra config.properties keys go in
    ``extra_config``. System metrics (a Python helper run every minute) are off unless
    ``system_metrics=True``: on a small machine they cost more than they tell.
    """

    name = "torchserve"

    def __init__(
        self,
        workdir: Path,
        model_store: Path | None = None,
        *,
        inference_port: int | None = None,
        management_port: int | None = None,
        metrics_port: int | None = None,
        system_metrics: bool = False,
        extra_config: dict[str, str] | None = None,
    ) -> None:
        super().__init__(workdir)
        self.model_store = Path(model_store) if model_store else self.workdir / "model-store"
        self.inference_port = inference_port or free_port(self.host)
        self.management_port = management_port or free_port(self.host)
        self.metrics_port = metrics_port or free_port(self.host)
        # gRPC cannot be switched off in 0.12; give it free ports so it never collides.
        self.grpc_inference_port = free_port(self.host)
        self.grpc_management_port = free_port(self.host)
        self.system_metrics = system_metrics
        self.extra_config = dict(extra_config or {})
        self.config_path = self.workdir / "config.properties"

    @classmethod
    def available(cls) -> str | None:
        """None if torchserve and java are installed, else how to install them."""
        if venv_bin("torchserve") is None:
            return "torchserve not found: pip install 'watchloop[serving]'"
        if shutil.which("java") is None:
            return (
                "java not found (TorchServe needs Java 11+): "
                "apt-get install openjdk-17-jre-headless (scripts/system-deps.sh)"
            )
        return None

    @property
    def inference_url(self) -> str:
        """Base URL of the inference API (``/ping``, ``/predictions/...``)."""
        return f"http://{self.host}:{self.inference_port}"

    @property
    def management_url(self) -> str:
        """Base URL of the management API (``/models``)."""
        return f"http://{self.host}:{self.management_port}"

    @property
    def metrics_url(self) -> str:
        """URL of the Prometheus metrics endpoint."""
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def address(self) -> str:
        return self.inference_url

    def prepare(self) -> None:
        self.model_store.mkdir(parents=True, exist_ok=True)
        (self.workdir / "tmp").mkdir(exist_ok=True)
        config = {
            "inference_address": self.inference_url,
            "management_address": self.management_url,
            "metrics_address": f"http://{self.host}:{self.metrics_port}",
            "grpc_inference_address": self.host,
            "grpc_inference_port": str(self.grpc_inference_port),
            "grpc_management_address": self.host,
            "grpc_management_port": str(self.grpc_management_port),
            "metrics_mode": "prometheus",
            "model_store": str(self.model_store),
            "disable_system_metrics": "false" if self.system_metrics else "true",
            # Our handler's own counters (per-version requests, payload logs lost) appear
            # on /metrics only when TorchServe registers handler metrics it was not told of.
            "model_metrics_auto_detect": "true",
            **self.extra_config,
        }
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in config.items()))

    def environment(self) -> dict[str, str]:
        tmp = str(self.workdir / "tmp")
        # torchserve keeps its pid file and worker sockets in the temp dir: a private one
        # lets several servers (and other users' servers) run side by side.
        return {
            "TMPDIR": tmp,
            "TEMP": tmp,
            "LOG_LOCATION": str(self.workdir / "logs"),
            "METRICS_LOCATION": str(self.workdir / "logs"),
        }

    def command(self) -> list[str]:
        return [
            str(venv_bin("torchserve")),
            "--start",
            "--foreground",
            "--ncs",
            "--disable-token-auth",
            "--enable-model-api",
            "--ts-config",
            str(self.config_path),
            "--model-store",
            str(self.model_store),
        ]

    def is_ready(self) -> bool:
        return http_ready(
            f"{self.inference_url}/ping",
            lambda status, body: status == 200 and _healthy(body),
        )


def _healthy(body: bytes) -> bool:
    try:
        return json.loads(body).get("status") == "Healthy"
    except ValueError:
        return False
