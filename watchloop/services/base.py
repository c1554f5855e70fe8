"""Run a real server as a child process: start, wait until it serves, stop by process group.

Errors::

    RuntimeError
    ├── BinaryNotFound      the server's binary is not on this machine (says how to install it)
    └── ServiceStartError   the server started but died or never became ready (log tail inside)
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = [
    "BinaryNotFound",
    "ServiceProcess",
    "ServiceStartError",
    "free_port",
    "http_get",
    "http_ready",
    "port_open",
    "venv_bin",
]

LOG_TAIL_BYTES = 4000
# Proxies from the environment must never see loopback readiness probes.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BinaryNotFound(RuntimeError):
    """A server's binary is missing; the message says what to install."""


class ServiceStartError(RuntimeError):
    """A server did not come up; the message names it, its address and the tail of its log."""

    def __init__(self, service: str, address: str, reason: str, log_tail: str = "") -> None:
        self.service = service
        self.address = address
        self.reason = reason
        self.log_tail = log_tail
        message = f"{service} at {address} failed to start: {reason}"
        if log_tail:
            message += f"\n--- last lines of its log ---\n{log_tail}"
        super().__init__(message)

    def __reduce__(self) -> tuple[type[ServiceStartError], tuple[str, str, str, str]]:
        # keeps the error picklable (pytest-xdist, multiprocessing) despite the custom init
        return type(self), (self.service, self.address, self.reason, self.log_tail)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Return True when a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes] | None:
    """GET ``url`` without proxies; return ``(status, body)``, or None if nothing answered."""
    try:
        with _DIRECT.open(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except (OSError, ValueError):
        return None


def venv_bin(name: str) -> Path | None:
    """Find an executable installed next to the running interpreter, then on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(name)
    return Path(found) if found else None


class ServiceProcess:
    """A real server run as a child process in its own process group.

    Subclasses say how to run it (``command``), what to write first (``prepare``), extra
    environment (``environment``) and when it serves (``is_ready``). Output goes to
    ``log_path`` in the working directory.
    """

    name: str = "service"
    host: str = "127.0.0.1"

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self.start_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # -- what a subclass provides -------------------------------------------------------

    @classmethod
    def available(cls) -> str | None:
        """Return None when this server can run here, else why not and how to fix it."""
        return None

    @property
    def address(self) -> str:
        """Where the server listens, for messages."""
        return self.host

    def command(self) -> list[str]:
        """The argv that runs the server in the foreground."""
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        """Variables added to the parent's environment for the server."""
        return {}

    def prepare(self) -> None:
        """Write config files and directories the server needs before it starts."""

    def is_ready(self) -> bool:
        """Return True once the server serves requests."""
        raise NotImplementedError

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """PID of the running server (also its process group id), None when not running."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    @property
    def running(self) -> bool:
        """True while the server's main process is alive."""
        return self.pid is not None

    def start(self, timeout: float = 60) -> Self:
        """Start the server and wait until it is ready; return self.

        Raises BinaryNotFound if it cannot run here, ServiceStartError (after killing what
        was started) if it exits or is not ready within ``timeout`` seconds.
        """
        if self.running:
            return self
        reason = self.available()
        if reason is not None:
            raise BinaryNotFound(reason)
        self.prepare()
        argv = self.command()
        env = {**os.environ, **self.environment()}
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            try:
                self._process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                reason = f"cannot exec {argv[0]}: {exc}"
                raise ServiceStartError(self.name, self.address, reason) from exc
        _track(self)
        try:
            self._wait_ready(began + timeout, timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        assert self._process is not None
        delay = 0.01
        while True:
            code = self._process.poll()
            if code is not None:
                raise ServiceStartError(
                    self.name, self.address, f"exited with code {code}", self.log_tail()
                )
            if self.is_ready():
                return
            if time.monotonic() >= deadline:
                raise ServiceStartError(
                    self.name, self.address, f"not ready after {timeout:g} s", self.log_tail()
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM the process group, SIGKILL what is left after ``timeout`` s; idempotent.

        The group leader is signalled last: launchers such as ``torchserve`` and
        ``mlflow server`` wait for their server process, so they reap it rather than leave
        a zombie behind.
        """
        process = self._process
        if process is None:
            return
        pgid = process.pid
        deadline = time.monotonic() + timeout
        if process.poll() is None:
            children = [pid for pid in _group_members(pgid) if pid != pgid]
            for pid in children:
                _signal(pid, signal.SIGTERM)
            while children and process.poll() is None and time.monotonic() < deadline:
                children = [pid for pid in children if pid in _group_members(pgid)]
                time.sleep(0.05)
            _signal_group(pgid, signal.SIGTERM)
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(pgid, signal.SIGKILL)
                process.wait()
        # Anything still in the group (a worker that ignored SIGTERM) gets until the deadline.
        while _group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _group_members(pgid):
            _signal_group(pgid, signal.SIGKILL)
        _RUNNING.discard(self)

    def log_tail(self, limit: int = LOG_TAIL_BYTES) -> str:
        """The last ``limit`` bytes of the server's log, decoded."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - limit))
                return log.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {self.address} {state}>"


def http_ready(url: str, accept: Callable[[int, bytes], bool] | None = None) -> bool:
    """True when GET ``url`` answers 200 (and ``accept(status, body)`` agrees, if given)."""
    answer = http_get(url, timeout=1.0)
    if answer is None:
        return False
    status, body = answer
    return accept(status, body) if accept else status == 200


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _group_members(pgid: int) -> list[int]:
    """PIDs of the live (non-zombie) processes in a process group."""
    proc = Path("/proc")
    if not proc.is_dir():  # no procfs: all we can tell is whether the group exists
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # fields after the parenthesised command: state ppid pgrp ...
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


_RUNNING: weakref.WeakSet[ServiceProcess] = weakref.WeakSet()
_atexit_registered = False


def _track(service: ServiceProcess) -> None:
    """Remember a started server so that interpreter exit stops it."""
    global _atexit_registered
    _RUNNING.add(service)
    if not _atexit_registered:
        atexit.register(_stop_all)
        _atexit_registered = True


def _stop_all() -> None:
    for service in list(_RUNNING):
        service.stop(timeout=5)
