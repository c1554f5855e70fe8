"""The training runner: one run in a subprocess, with a timeout, its output in a log.

The run directory holds what the run saw and made: ``spec.json``, ``data.parquet`` (the
point-in-time rows), ``train.log`` (everything the entrypoint printed) and ``out/``. A run
that exits non-zero, exceeds its timeout (its whole process group is killed) or writes no
usable model is ``failed`` or ``timed_out``, with the log's tail as the reason.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .training import DATA_FILE, MODEL_FILE, RESULT_FILE, TrainingSpec

__all__ = ["RunResult", "TrainingRunner"]

LOG_FILE = "train.log"
RunStatus = Literal["succeeded", "failed", "timed_out"]


@dataclass
class RunResult:
    """How a run ended and what it made."""

    status: RunStatus
    reason: str
    run_dir: Path
    seconds: float
    features: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def model_file(self) -> Path:
        return self.run_dir / MODEL_FILE

    @property
    def log_file(self) -> Path:
        return self.run_dir / LOG_FILE

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class TrainingRunner:
    """Runs ``entrypoint`` (``module:function``) or ``command`` for one ``TrainingSpec``."""

    def __init__(self, *, entrypoint: str | None = None, command: tuple[str, ...] | None = None,
                 timeout_s: float = 600.0, python: str = sys.executable,
                 env: dict[str, str] | None = None) -> None:
        if not entrypoint and not command:
            raise ValueError("a runner needs an entrypoint or a command")
        self.entrypoint = entrypoint
        self.command = command
        self.timeout_s = timeout_s
        self.python = python
        self.env = env

    def run(self, spec: TrainingSpec, data: Any, run_dir: Path, *,
            heartbeat: Callable[[], bool] = lambda: True) -> RunResult:
        """Train on ``data`` (a DataFrame) in ``run_dir``. ``heartbeat`` is called about once
        a second while the run works; False (the lease was lost) stops the run."""
        run_dir.mkdir(parents=True, exist_ok=True)
        spec.save(run_dir)
        data.to_parquet(run_dir / DATA_FILE, index=False)
        argv = (list(self.command) if self.command
                else [self.python, "-m", "feedback.worker", str(run_dir), str(self.entrypoint)])
        env = {**os.environ, **(self.env or {}), "WATCHLOOP_RUN_DIR": str(run_dir),
               "PYTHONUNBUFFERED": "1"}
        started = time.perf_counter()
        with open(run_dir / LOG_FILE, "wb") as log:
            try:
                process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, cwd=run_dir, env=env,
                                           start_new_session=True)
            except OSError as exc:
                return RunResult("failed", f"could not start {argv[0]}: {exc}", run_dir, 0.0)
            outcome = self._wait(process, started, heartbeat)
        seconds = time.perf_counter() - started
        result = RunResult("failed", "", run_dir, seconds)
        if outcome == "timeout":
            result.status = "timed_out"
            result.reason = f"timed out after {self.timeout_s:g} s"
            return result
        if outcome == "lost":
            result.reason = "the run's lease was lost (another process took the slot)"
            return result
        if process.returncode != 0:
            result.reason = f"exited with status {process.returncode}: {_last_line(result)}"
            return result
        return self._collect(result)

    def _wait(self, process: subprocess.Popen, started: float,
              heartbeat: Callable[[], bool]) -> str:
        while True:
            try:
                process.wait(timeout=1.0)
                return "exited"
            except subprocess.TimeoutExpired:
                pass
            if time.perf_counter() - started > self.timeout_s:
                _kill(process)
                return "timeout"
            if not heartbeat():
                _kill(process)
                return "lost"

    def _collect(self, result: RunResult) -> RunResult:
        if not result.model_file.is_file():
            result.reason = f"the entrypoint wrote no {MODEL_FILE}"
            return result
        try:
            made = json.loads((result.run_dir / RESULT_FILE).read_text())
            result.features = tuple(str(f) for f in made["features"])
            result.params = dict(made.get("params", {}))
            result.metrics = {k: float(v) for k, v in made.get("metrics", {}).items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            result.reason = f"{RESULT_FILE} is missing or malformed: {exc}"
            return result
        if not result.features:
            result.reason = f"{RESULT_FILE} names no features"
            return result
        result.status, result.reason = "succeeded", ""
        return result


def _kill(process: subprocess.Popen) -> None:
    """Stop the run's whole process group: TERM, then KILL after 5 s."""
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _last_line(result: RunResult) -> str:
    tail = [line for line in result.log_tail(40).splitlines() if line.strip()]
    return tail[-1].strip() if tail else "no output"
