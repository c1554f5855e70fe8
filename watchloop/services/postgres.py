"""A private PostgreSQL (Debian's ``postgresql``): ``initdb`` and ``postgres`` on a free port.

PostgreSQL refuses to run as root; as root the cluster belongs to the ``postgres`` user and
lives in a directory of its own under the system temp dir (a pytest workdir under
``/tmp/pytest-of-root`` is not reachable by another user), removed again by ``stop``.
Loopback TCP only, trust authentication, no Unix socket, fsync off: a test's database.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from watchloop.services.base import ServiceProcess, ServiceStartError, free_port

__all__ = ["PostgresServer"]

_SYSTEM_USER = "postgres"


def _bin_dir() -> Path | None:
    """Debian keeps the server binaries in /usr/lib/postgresql/<major>/bin."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


class PostgresServer(ServiceProcess):
    """``postgres`` on a free loopback port, with a fresh cluster made by ``initdb``."""

    name = "postgres"

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port(self.host)
        self.user = "postgres"  # the database superuser
        self._data_dir: Path | None = None

    @classmethod
    def available(cls) -> str | None:
        if _bin_dir() is None:
            return "PostgreSQL not found: apt-get install postgresql (scripts/system-deps.sh)"
        return None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL, as MLflow's ``--backend-store-uri`` takes it."""
        return f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{database}"

    def _as_owner(self) -> list[str]:
        """Run a binary as the cluster's owner: ``postgres`` when we are root."""
        if os.geteuid() != 0:
            return []
        return ["setpriv", f"--reuid={_SYSTEM_USER}", f"--regid={_SYSTEM_USER}",
                "--init-groups", "--"]

    def prepare(self) -> None:
        bin_dir = _bin_dir()
        assert bin_dir is not None
        self._data_dir = Path(tempfile.mkdtemp(prefix="watchloop-pg-"))
        if os.geteuid() == 0:
            owner = pwd.getpwnam(_SYSTEM_USER)
            os.chown(self._data_dir, owner.pw_uid, owner.pw_gid)
        done = subprocess.run(
            [*self._as_owner(), str(bin_dir / "initdb"), "-D", str(self._data_dir / "data"),
             "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C.UTF-8"],
            capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise ServiceStartError(self.name, self.address, "initdb failed",
                                    (done.stdout + done.stderr)[-2000:])

    def command(self) -> list[str]:
        bin_dir = _bin_dir()
        assert bin_dir is not None and self._data_dir is not None
        return [*self._as_owner(), str(bin_dir / "postgres"), "-D", str(self._data_dir / "data"),
                "-p", str(self.port), "-c", f"listen_addresses={self.host}",
                "-c", "unix_socket_directories=", "-c", "fsync=off",
                "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]

    def is_ready(self) -> bool:
        bin_dir = _bin_dir()
        assert bin_dir is not None
        done = subprocess.run([str(bin_dir / "pg_isready"), "-h", self.host, "-p",
                               str(self.port), "-U", self.user, "-q"], check=False,
                              capture_output=True, timeout=10)
        return done.returncode == 0

    def create_database(self, name: str) -> str:
        """Create database ``name``; returns its URL."""
        bin_dir = _bin_dir()
        assert bin_dir is not None
        done = subprocess.run([str(bin_dir / "createdb"), "-h", self.host, "-p", str(self.port),
                               "-U", self.user, name], capture_output=True, text=True,
                              timeout=60, check=False)
        if done.returncode != 0 and "already exists" not in done.stderr:
            raise RuntimeError(f"createdb {name} at {self.address}: {done.stderr.strip()}")
        return self.url(name)

    def stop(self, timeout: float = 10) -> None:
        super().stop(timeout)
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None
