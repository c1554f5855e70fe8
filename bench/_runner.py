"""Run every benchmark, one after another, each in a process of its own; then a table.

    python -m bench                       # every bench/<name>.py, in name order
    python -m bench --only store drift    # these, in this order
    python -m bench --skip swap loop --timeout 900 --out /tmp/bench-results
    python -m bench --list

Each benchmark runs as ``python -m bench.<name>`` (so that a crash, a hang or a leaked server
in one does not end the others), one at a time (the benchmarks time a loaded machine; two at
once would time each other). Its stderr (the progress) goes to ``<out>/<name>.log``, its stdout
to ``<out>/<name>.stdout``, and its result, the last stdout line that parses as a JSON object,
with its status and seconds to ``<out>/<name>.json``. ``<out>/results.json`` holds every
benchmark of the run and the machine it ran on, rewritten after each benchmark.

A benchmark that runs past ``--timeout`` is interrupted: SIGINT to its process group, so that
its ``finally`` blocks and ``atexit`` hooks stop the servers it started (they run in sessions
of their own), then SIGKILL to the group if it is still there after a grace period.

Progress goes to stderr. On stdout, at the end: a table (benchmark, status, seconds, the
headline figures of each result), then one JSON line per benchmark, then, last, one JSON line
with every benchmark and the machine. The exit status is 1 if any benchmark failed, timed out
or gave no result, 130 if the run was interrupted, else 0.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._common import log

DEFAULT_PACKAGE = "bench"
DEFAULT_OUT = ".bench-results"
DEFAULT_TIMEOUT_S = 1800.0
#: Seconds between "still running" lines while a benchmark runs.
HEARTBEAT_S = 60.0
#: Seconds an interrupted benchmark gets to stop its servers before it is killed.
GRACE_S = 30.0

#: The figures a reader looks at first, per benchmark (from each module's docstring and
#: result). A benchmark not named here shows its top-level numeric keys.
HEADLINES: dict[str, tuple[str, ...]] = {
    "alerts": ("watchloop_p99_ms", "prometheus_p99_ms", "watchloop_vs_prometheus_p99",
               "backtest_threshold_s", "backtest_query_s", "backtest_speedup"),
    "console": ("rss_mb_before", "rss_mb_after", "growth_mb", "idle_growth_mb",
                "growth_mb_per_100_refreshes_second_half", "ratio_after_before"),
    "drift": ("watchloop_s", "evidently_s", "speedup", "max_score_diff", "decisions_agree"),
    "ingest": ("kafka_rows_per_s", "http_rows_per_s", "raw_rows_per_s", "ratio",
               "freshness_p99_ms", "freshness_under_load_p99_ms", "ack_p99_ms_at_2k",
               "small_batch_ratio"),
    "kafka_clients": ("kafka_python_records_per_s", "confluent_records_per_s", "ratio"),
    "lag": ("pairs", "scan_ms", "first_scan_ms"),
    "loop": ("total_s", "bootstrap_s", "ratio_to_aim"),
    "store": ("store_rows_per_s", "raw_rows_per_s", "ratio", "query_p95_ms", "tables_match"),
    "swap": ("backend", "requests", "failed", "p99_swap_ms", "p99_rest_ms", "p99_ratio",
             "swap_s"),
}


# --- discovery ------------------------------------------------------------------------------


def package_directory(package: str) -> Path:
    """The directory of a package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"no package named {package!r}")
    return Path(next(iter(spec.submodule_search_locations)))


def discover(package: str = DEFAULT_PACKAGE) -> list[str]:
    """The benchmarks of a package: its public modules (``<name>.py``, not ``_<name>.py``)."""
    directory = package_directory(package)
    return sorted(path.stem for path in directory.glob("*.py")
                  if not path.stem.startswith("_") and path.stem.isidentifier())


def summary_line(package: str, name: str) -> str:
    """The first sentence or paragraph of a benchmark's docstring, read from its source
    (nothing imported), on one line."""
    path = package_directory(package) / f"{name}.py"
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    except (OSError, SyntaxError, ValueError):
        return ""
    paragraph = (doc or "").strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split())


def select(available: Sequence[str], only: Sequence[str] | None,
           skip: Sequence[str] | None) -> list[str]:
    """``only`` in its order (else every benchmark), less ``skip``; unknown names raise."""
    unknown = [n for n in [*(only or ()), *(skip or ())] if n not in available]
    if unknown:
        raise ValueError(f"unknown benchmark(s): {', '.join(unknown)}; "
                         f"available: {', '.join(available)}")
    chosen = list(dict.fromkeys(only)) if only else list(available)
    return [n for n in chosen if n not in set(skip or ())]


# --- running one benchmark ------------------------------------------------------------------


@dataclass
class Outcome:
    """How one benchmark ended, and what it printed."""

    name: str
    status: str
    seconds: float
    returncode: int | None = None
    #: The result (the last stdout line that parsed as a JSON object) and the lines of the
    #: same keys just before it (``swap`` prints one per backend), in order.
    results: list[dict[str, Any]] = field(default_factory=list)
    log: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def result(self) -> dict[str, Any] | None:
        return self.results[-1] if self.results else None

    def record(self) -> dict[str, Any]:
        """The JSON form: status, seconds, return code, result (and every result if several)."""
        out: dict[str, Any] = {"status": self.status, "seconds": round(self.seconds, 1),
                               "returncode": self.returncode, "result": self.result}
        if len(self.results) > 1:
            out["results"] = self.results
        out["log"] = self.log
        return out


def json_objects(text: str) -> list[dict[str, Any]]:
    """The lines of ``text`` that parse as JSON objects, in order."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def trailing_series(objects: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last object and the ones of the same keys right before it (one line per backend,
    say), in order; earlier objects of other keys are not results."""
    if not objects:
        return []
    keys = objects[-1].keys()
    start = len(objects) - 1
    while start > 0 and objects[start - 1].keys() == keys:
        start -= 1
    return list(objects[start:])


def child_environment(package: str) -> dict[str, str]:
    """This environment, with the package's parent directory first on PYTHONPATH."""
    env = dict(os.environ)
    root = str(package_directory(package).parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def last_line(path: Path, limit: int = 120) -> str:
    """The last non-empty line of a file (its tail only is read), cut to ``limit`` characters."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 4096))
            tail = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:limit] if lines else ""


def stop_group(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """Interrupt a benchmark's process group; kill the group if it outlives ``grace_s``."""
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    kill_leftovers(process.pid, "")


def kill_leftovers(pgid: int, name: str) -> None:
    """Kill what is left in a finished benchmark's process group (its leader has exited).

    Servers started through ``watchloop.services`` run in sessions of their own and are
    stopped by the benchmark itself; this catches helpers started without one, so that they
    do not load the machine under the next benchmark.
    """
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return
    if name:
        log(f"{name}: left processes behind in its group; killing them")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def run_one(name: str, out: Path, *, package: str = DEFAULT_PACKAGE,
            timeout_s: float = DEFAULT_TIMEOUT_S, heartbeat_s: float = HEARTBEAT_S,
            grace_s: float = GRACE_S) -> Outcome:
    """Run ``python -m <package>.<name>`` in a session of its own and collect its result.

    Raises KeyboardInterrupt after stopping the benchmark if this process is interrupted.
    """
    log_path, stdout_path = out / f"{name}.log", out / f"{name}.stdout"
    started = time.monotonic()
    with log_path.open("wb") as err, stdout_path.open("wb") as std:
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", f"{package}.{name}"], stdin=subprocess.DEVNULL,
                stdout=std, stderr=err, env=child_environment(package),
                start_new_session=True)
        except OSError as exc:
            return Outcome(name, f"failed to start: {exc}", 0.0, log=str(log_path))
        status = _wait(process, name, log_path, started, timeout_s, heartbeat_s, grace_s)
    seconds = time.monotonic() - started
    results = trailing_series(
        json_objects(stdout_path.read_text(encoding="utf-8", errors="replace")))
    if status is None:
        rc = process.returncode
        status = ("ok" if results else "failed: no JSON result") if rc == 0 else f"failed rc {rc}"
    return Outcome(name, status, seconds, process.returncode, results, str(log_path))


def _wait(process: subprocess.Popen[bytes], name: str, log_path: Path, started: float,
          timeout_s: float, heartbeat_s: float, grace_s: float) -> str | None:
    """Wait for the benchmark, saying now and then how long it has run.

    Returns "timed out" if it had to be stopped, else None (it exited by itself).
    """
    deadline = started + timeout_s
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                log(f"{name}: timed out after {timeout_s:.0f}s; interrupting it")
                stop_group(process, grace_s)
                return "timed out"
            try:
                process.wait(timeout=min(heartbeat_s, left))
                kill_leftovers(process.pid, name)
                return None
            except subprocess.TimeoutExpired:
                if time.monotonic() < deadline:
                    elapsed = time.monotonic() - started
                    log(f"{name}: running for {elapsed:.0f}s; last: {last_line(log_path)}")
    except KeyboardInterrupt:
        log(f"{name}: interrupted; stopping it (up to {grace_s:.0f}s)")
        stop_group(process, grace_s)
        raise


# --- the machine ----------------------------------------------------------------------------


def _proc_field(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.split(":", 1)[0].strip() == key:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def gpus() -> list[dict[str, str]] | str | None:
    """The GPUs ``nvidia-smi`` lists (name, memory, driver); None without nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nvidia-smi failed: {exc}"
    if done.returncode != 0:
        return f"nvidia-smi failed: {(done.stderr or done.stdout).strip()[:200]}"
    rows = [[part.strip() for part in line.split(",")] for line in done.stdout.splitlines()
            if line.strip()]
    return [dict(zip(("name", "memory", "driver"), row, strict=False)) for row in rows]


def machine() -> dict[str, Any]:
    """What the numbers were measured on: CPUs, memory, Python, GPUs."""
    memory_kb = _proc_field("/proc/meminfo", "MemTotal")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpus": os.cpu_count(),
        "cpus_usable": usable,
        "cpu_model": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or None,
        "memory_gib": round(int(memory_kb.split()[0]) / 1024 ** 2, 1) if memory_kb else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "gpu": gpus(),
    }


# --- output ---------------------------------------------------------------------------------


def format_value(value: Any) -> str:
    """A figure for the table: thousands separated, about four significant digits."""
    if value is None:
        return "-"
    if isinstance(value, bool | str):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return json.dumps(value, separators=(",", ":"), default=str)


def headline(name: str, result: dict[str, Any] | None) -> str:
    """``key=value`` for the keys a reader wants first from this benchmark's result."""
    if not result:
        return ""
    keys = HEADLINES.get(name) or [k for k, v in result.items()
                                   if isinstance(v, int | float) and not isinstance(v, bool)]
    return "  ".join(f"{k}={format_value(result[k])}" for k in keys if k in result)


def table(outcomes: Sequence[Outcome]) -> str:
    """One row per benchmark (and one more per extra result line), columns aligned."""
    rows = [("benchmark", "status", "seconds", "headline")]
    for outcome in outcomes:
        first = (outcome.name, outcome.status, f"{outcome.seconds:.1f}")
        rows.append((*first, headline(outcome.name, (outcome.results or [None])[0])))
        rows.extend(("", "", "", headline(outcome.name, extra)) for extra in outcome.results[1:])
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip()
             for r in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def summary(outcomes: Sequence[Outcome], host: dict[str, Any], started: datetime,
            seconds: float) -> dict[str, Any]:
    """Every benchmark of the run by name, with the machine and when it ran."""
    return {"benchmarks": {o.name: o.record() for o in outcomes},
            "ok": all(o.ok for o in outcomes),
            "started": started.isoformat(timespec="seconds"),
            "seconds": round(seconds, 1), "machine": host}


def write_json(path: Path, value: Any) -> None:
    """Write a JSON file whole (a reader never sees half of it)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=2, default=str) + "\n", encoding="utf-8")
    partial.replace(path)


# --- the command ----------------------------------------------------------------------------


def run_all(names: Sequence[str], out: Path, *, package: str = DEFAULT_PACKAGE,
            timeout_s: float = DEFAULT_TIMEOUT_S, heartbeat_s: float = HEARTBEAT_S,
            grace_s: float = GRACE_S) -> tuple[list[Outcome], dict[str, Any], bool]:
    """Run the benchmarks in turn, writing each one's files and results.json as they end.

    Returns the outcomes, the summary, and whether the run was interrupted (Ctrl-C): the
    benchmark then running is stopped and recorded as interrupted, and the rest are not run.
    """
    out.mkdir(parents=True, exist_ok=True)
    host, started, clock = machine(), datetime.now(UTC), time.monotonic()
    outcomes: list[Outcome] = []
    interrupted = False
    for index, name in enumerate(names, 1):
        log(f"[{index}/{len(names)}] {name}: started (log {out / f'{name}.log'})")
        began = time.monotonic()
        try:
            outcome = run_one(name, out, package=package, timeout_s=timeout_s,
                              heartbeat_s=heartbeat_s, grace_s=grace_s)
        except KeyboardInterrupt:
            outcome = Outcome(name, "interrupted", time.monotonic() - began,
                              log=str(out / f"{name}.log"))
            interrupted = True
        said = "" if outcome.ok else f"; its log ends: {last_line(out / f'{name}.log')}"
        log(f"[{index}/{len(names)}] {name}: {outcome.status} in {outcome.seconds:.1f}s{said}")
        outcomes.append(outcome)
        write_json(out / f"{name}.json", {"benchmark": name, **outcome.record()})
        write_json(out / "results.json",
                   summary(outcomes, host, started, time.monotonic() - clock))
        if interrupted:
            break
    return outcomes, summary(outcomes, host, started, time.monotonic() - clock), interrupted


def positive_seconds(text: str) -> float:
    """An argparse type for a number of seconds above zero."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds above 0, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    """The options of ``python -m bench``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these benchmarks, in this order")
    parser.add_argument("--skip", nargs="+", metavar="NAME", help="do not run these benchmarks")
    parser.add_argument("--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT_S,
                        metavar="SECONDS", help="seconds per benchmark, then it is stopped "
                        f"(default {DEFAULT_TIMEOUT_S:.0f})")
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), metavar="DIR",
                        help=f"where logs and results go (default {DEFAULT_OUT}/)")
    parser.add_argument("--list", action="store_true",
                        help="list the benchmarks (name and what each measures) and exit")
    # For the tests: a package of stand-in benchmarks, and shorter waits.
    parser.add_argument("--package", default=DEFAULT_PACKAGE, help=argparse.SUPPRESS)
    parser.add_argument("--heartbeat", type=float, default=HEARTBEAT_S, help=argparse.SUPPRESS)
    parser.add_argument("--grace", type=float, default=GRACE_S, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, run the benchmarks, print the table and the JSON lines."""
    options = parser()
    args = options.parse_args(argv)
    try:
        available = discover(args.package)
        names = select(available, args.only, args.skip)
    except ValueError as exc:
        options.error(str(exc))
    if args.list:
        width = max((len(n) for n in available), default=0)
        for name in available:
            print(f"{name:<{width}}  {summary_line(args.package, name)}".rstrip())
        return 0
    if not names:
        options.error("no benchmark left to run")
    outcomes, result, interrupted = run_all(
        names, args.out, package=args.package, timeout_s=args.timeout,
        heartbeat_s=args.heartbeat, grace_s=args.grace)
    print(table(outcomes))
    print()
    for outcome in outcomes:
        print(json.dumps({"benchmark": outcome.name, **outcome.record()}, default=str))
    print(json.dumps(result, default=str), flush=True)
    log(f"results in {args.out / 'results.json'}")
    if interrupted:
        return 130
    return 0 if result["ok"] else 1
