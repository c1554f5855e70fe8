"""Triton 2.51: the ``tritonserver`` binary bundled in nvidia-pytriton, run directly.

pytriton's own Python API is not used (its repository load fails here); instead the binary
runs with a private backend directory and ``--model-control-mode=explicit``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from pathlib import Path

from watchloop.services.base import ServiceProcess, free_port, http_ready

__all__ = ["TritonServer", "triton_dist_dir", "write_doubling_model"]

INSTALL_HINT = "pip install 'watchloop[serving]' (nvidia-pytriton==0.7.0)"


def triton_dist_dir() -> Path | None:
    """The ``pytriton/tritonserver`` directory of the installed nvidia-pytriton, if any."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "tritonserver"
        if (candidate / "bin" / "tritonserver").is_file():
            return candidate
    return None


def _libs_dir(dist: Path) -> Path:
    # The wheel's vendored shared libraries sit beside the package (auditwheel layout).
    return dist.parent.parent / "nvidia_pytriton.libs"


def _python_tag() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


class TritonServer(ServiceProcess):
    """tritonserver with HTTP, gRPC and metrics on free loopback ports, Python backend only.

    ``model_repository`` defaults to ``<workdir>/models``. Models are loaded explicitly:
    ``POST /v2/repository/models/{name}/load``.
    """

    name = "triton"

    def __init__(
        self,
        workdir: Path,
        model_repository: Path | None = None,
        *,
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        super().__init__(workdir)
        self.model_repository = (
            Path(model_repository) if model_repository else self.workdir / "models"
        )
        self.http_port = http_port or free_port(self.host)
        self.grpc_port = grpc_port or free_port(self.host)
        self.metrics_port = metrics_port or free_port(self.host)
        self.extra_args = list(extra_args or [])
        self.backend_directory = self.workdir / "backends"

    @classmethod
    def available(cls) -> str | None:
        """None if the bundled tritonserver and a matching Python stub exist, else why not."""
        dist = triton_dist_dir()
        if dist is None:
            return f"tritonserver binary not found: {INSTALL_HINT}"
        stub = dist / "python_backend_stubs" / _python_tag() / "triton_python_backend_stub"
        if not stub.is_file():
            return f"nvidia-pytriton has no Python backend stub for Python {_python_tag()}"
        if not _libs_dir(dist).is_dir():
            return f"nvidia_pytriton.libs missing next to {dist.parent}: reinstall {INSTALL_HINT}"
        return None

    @property
    def http_url(self) -> str:
        """Base URL of the KServe v2 HTTP API."""
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC API."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """URL of the Prometheus metrics endpoint."""
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def address(self) -> str:
        return self.http_url

    def prepare(self) -> None:
        dist = triton_dist_dir()
        assert dist is not None
        self.model_repository.mkdir(parents=True, exist_ok=True)
        python_dir = self.backend_directory / "python"
        python_dir.mkdir(parents=True, exist_ok=True)
        sources = [
            dist / "backends" / "python" / "libtriton_python.so",
            dist / "backends" / "python" / "triton_python_backend_utils.py",
            dist / "python_backend_stubs" / _python_tag() / "triton_python_backend_stub",
        ]
        for source in sources:
            target = python_dir / source.name
            if not target.exists():
                shutil.copy2(source, target)

    def environment(self) -> dict[str, str]:
        dist = triton_dist_dir()
        assert dist is not None
        # Without the vendored libs on the path a model load hangs for minutes, silently.
        paths = [sysconfig.get_config_var("LIBDIR") or "", str(_libs_dir(dist))]
        inherited = os.environ.get("LD_LIBRARY_PATH")
        if inherited:
            paths.append(inherited)
        # The Python backend stub runs models with the interpreter found on PATH.
        bin_dir = str(Path(sys.executable).parent)
        return {
            "LD_LIBRARY_PATH": ":".join(p for p in paths if p),
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        }

    def command(self) -> list[str]:
        dist = triton_dist_dir()
        assert dist is not None
        return [
            str(dist / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            "--model-control-mode=explicit",
            f"--backend-directory={self.backend_directory}",
            f"--cache-directory={dist / 'caches'}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            "--log-verbose=0",
            *self.extra_args,
        ]

    def is_ready(self) -> bool:
        return http_ready(f"{self.http_url}/v2/health/ready")


_DOUBLING_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            out = pb_utils.Tensor("OUTPUT0", x * 2)
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses
"""

_DOUBLING_CONFIG = """
backend: "python"
max_batch_size: 0
version_policy: {{ all {{ }} }}
input [{{ name: "INPUT0", data_type: TYPE_FP32, dims: [ 3 ] }}]
output [{{ name: "OUTPUT0", data_type: TYPE_FP32, dims: [ 3 ] }}]
instance_group [{{ kind: KIND_CPU, count: 1 }}]
"""


def write_doubling_model(repository: Path, name: str, versions: tuple[int, ...] = (1,)) -> Path:
    """Write a tiny Python-backend model (OUTPUT0 = 2 * INPUT0, FP32[3]) in each version.

    For demos and tests: Triton here runs the Python backend only, and this model needs
    nothing but numpy.
    """
    model_dir = repository / name
    for version in versions:
        (model_dir / str(version)).mkdir(parents=True, exist_ok=True)
        (model_dir / str(version) / "model.py").write_text(_DOUBLING_MODEL)
    (model_dir / "config.pbtxt").write_text(f'name: "{name}"\n' + _DOUBLING_CONFIG.format())
    return model_dir
