"""A private redis-server: no persistence, loopback only."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from watchloop.services.base import ServiceProcess, free_port

__all__ = ["RedisServer"]


class RedisServer(ServiceProcess):
    """redis-server on a free loopback port with saving and AOF off."""

    name = "redis"

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port(self.host)

    @classmethod
    def available(cls) -> str | None:
        """None if redis-server is on PATH, else how to install it."""
        if shutil.which("redis-server") is None:
            return "redis-server not found: apt-get install redis-server (scripts/system-deps.sh)"
        return None

    @property
    def url(self) -> str:
        """``redis://host:port/0`` for redis-py."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            str(shutil.which("redis-server")),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.workdir),
        ]

    def is_ready(self) -> bool:
        # An open port is not enough: redis answers LOADING until its dataset is in memory.
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False
