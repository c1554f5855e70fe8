"""Lay out a version for a server: a TorchServe ``.mar``, or the files of a Triton version.

Both carry the same four files beside the server-side entry point: ``model.pt``
(TorchScript), ``watchloop-model.json`` (name, version, features, payload-log target), and
copies of ``serving_adapters.runtime`` and ``payload_log`` under names that cannot collide
with a server's own modules.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from .base import ModelPackage
from .errors import PackagingError
from .runtime import META_FILE, MODEL_FILE

__all__ = ["build_mar", "mar_name", "write_version_files"]

_SERVER_FILES = {
    "watchloop_runtime.py": ("serving_adapters", "runtime.py"),
    "watchloop_payload_log.py": ("serving_adapters", "payload_log.py"),
}

def write_version_files(package: ModelPackage, directory: Path, entry_point: str,
                        entry_name: str) -> list[Path]:
    """Write the model, its metadata, the runtime and ``entry_point`` (a file of
    ``serving_adapters.server_side``, saved as ``entry_name``) into ``directory``."""
    if not package.model_file.is_file():
        raise PackagingError(f"{package.model}/{package.version}: no model file at "
                             f"{package.model_file}")
    if not package.features:
        raise PackagingError(f"{package.model}/{package.version}: a model needs its feature "
                             "names, in the order it expects them")
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(package.model_file, directory / MODEL_FILE)
    meta = {"model": package.model, "version": package.version,
            "features": list(package.features), "payload_log": package.payload_log}
    (directory / META_FILE).write_text(json.dumps(meta, indent=2))
    written = [directory / MODEL_FILE, directory / META_FILE]
    sources = {**_SERVER_FILES, entry_name: ("serving_adapters.server_side", entry_point)}
    for target, (package_name, source) in sources.items():
        text = resources.files(package_name).joinpath(source).read_text()
        (directory / target).write_text(text)
        written.append(directory / target)
    return written


def mar_name(model: str, version: str) -> str:
    """The archive's file name: one per version, so re-registering never collides."""
    return f"{model}-{version}.mar"


def build_mar(package: ModelPackage, model_store: Path, archiver: str) -> str:
    """Package a version with torch-model-archiver into ``model_store``; its file name."""
    model_store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="watchloop-mar-") as tmp:
        staging = Path(tmp) / "src"
        files = write_version_files(package, staging, "torchserve_handler.py", "handler.py")
        extra = [str(f) for f in files if f.name not in (MODEL_FILE,)]
        command = [archiver, "--model-name", package.model, "--version", package.version,
                   "--serialized-file", str(staging / MODEL_FILE),
                   "--handler", str(staging / "handler.py"),
                   "--extra-files", ",".join(extra),
                   "--export-path", tmp, "--force"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PackagingError(f"torch-model-archiver could not run: {exc}") from exc
        if done.returncode != 0:
            raise PackagingError(f"torch-model-archiver failed for {package.model}/"
                                 f"{package.version}: {(done.stderr or done.stdout)[-2000:]}")
        name = mar_name(package.model, package.version)
        shutil.move(str(Path(tmp) / f"{package.model}.mar"), model_store / name)
    return name

