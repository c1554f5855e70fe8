"""``python -m bench``: discovery, one process per benchmark, statuses, the table, the JSON.

No real benchmark runs here (they start servers and take minutes): the runner is pointed at a
package of stand-in benchmarks written to a temporary directory (its hidden ``--package``
option), one that succeeds, one that crashes, one that hangs past the timeout and leaves a
child behind, one named ``swap`` (so its headline keys are bench.swap's) that prints a JSON
line per backend, and one that prints none.
"""

from __future__ import annotations

import ast
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from bench._runner import HEADLINES, headline, json_objects, select

REPO = Path(__file__).resolve().parents[1]

FAKES = {
    "good": """
        import json, sys
        print("warming up", file=sys.stderr, flush=True)
        print("not json")
        print(json.dumps({"early": 1}))
        print(json.dumps({"rows": 1000, "ratio": 0.5, "name": "x", "flag": True}))
        print("3")
        print("done")
    """,
    "bad": """
        import sys
        print("about to fail", file=sys.stderr, flush=True)
        raise SystemExit(3)
    """,
    "slow": """
        import os, subprocess, sys, time
        child = subprocess.Popen(["sleep", "600"])
        with open(os.environ["FAKE_CHILD_PID"], "w") as handle:
            handle.write(str(child.pid))
        print("sleeping", file=sys.stderr, flush=True)
        time.sleep(600)
    """,
    "swap": """
        import json
        for backend, ratio in (("torchserve", 1.0), ("triton", 1.15)):
            print(json.dumps({"backend": backend, "failed": 0, "p99_ratio": ratio,
                              "swap_s": 3.3, "threads": 2}))
    """,
    "nojson": """
        print("finished, but forgot its result")
    """,
    "_private": """
        raise SystemExit("a private module must not run")
    """,
}


def _fake_package(root: Path) -> str:
    package = root / "fakebench"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in FAKES.items():
        (package / f"{name}.py").write_text(textwrap.dedent(source))
    return "fakebench"


def _runner(args: list[str], root: Path, **env: str) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(root), str(REPO), os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=root, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": path, **env})


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run of the runner over good, bad, slow (2 s timeout), swap and nojson."""
    root = tmp_path_factory.mktemp("bench-runner")
    package = _fake_package(root)
    pid_file = root / "child.pid"
    began = time.monotonic()
    done = _runner(["--package", package, "--only", "good", "bad", "slow", "swap", "nojson",
                    "--timeout", "2", "--grace", "5", "--heartbeat", "0.5", "--out", "out"],
                   root, FAKE_CHILD_PID=str(pid_file))
    return {"done": done, "out": root / "out", "seconds": time.monotonic() - began,
            "child": int(pid_file.read_text()), "lines": done.stdout.splitlines()}


def test_list_names_every_public_bench_module() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--list"], cwd=REPO,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    listed = [line.split()[0] for line in done.stdout.splitlines()]
    modules = sorted(p.stem for p in (REPO / "bench").glob("*.py") if not p.stem.startswith("_"))
    assert listed == modules
    assert {"alerts", "console", "drift", "ingest", "kafka_clients", "lag", "loop", "store",
            "swap"} <= set(listed)
    # Each line says what the benchmark measures (its docstring's first paragraph).
    assert "lag scan" in done.stdout


def _key_patterns(path: Path) -> list[re.Pattern[str]]:
    """Every key a module could emit: its strings, f-strings (any word for a placeholder) and
    keyword arguments (``result.update(speedup=...)``)."""
    patterns = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            patterns.append(re.escape(node.value))
        elif isinstance(node, ast.JoinedStr):
            patterns.append("".join(re.escape(part.value) if isinstance(part, ast.Constant)
                                    else r"\w+" for part in node.values))
        elif isinstance(node, ast.keyword) and node.arg:
            patterns.append(re.escape(node.arg))
    return [re.compile(p) for p in patterns]


def test_every_headline_key_is_one_its_benchmark_can_emit() -> None:
    for name, keys in HEADLINES.items():
        patterns = _key_patterns(REPO / "bench" / f"{name}.py")
        missing = [k for k in keys if not any(p.fullmatch(k) for p in patterns)]
        assert not missing, f"bench.{name} emits no {missing}"


def test_the_table_shows_each_status(fake_run: dict[str, Any]) -> None:
    done = fake_run["done"]
    rows = {line.split()[0]: line for line in fake_run["lines"]
            if line.split() and line.split()[0] in {"good", "bad", "slow", "swap", "nojson"}}
    assert "  ok  " in rows["good"]
    assert "failed rc 3" in rows["bad"]
    assert "timed out" in rows["slow"]
    assert "failed: no JSON result" in rows["nojson"]
    # The headline of an unknown benchmark: its top-level numeric keys, no text, no bools.
    assert "rows=1,000" in rows["good"] and "ratio=0.5" in rows["good"]
    assert "early" not in rows["good"]  # an earlier JSON line of other keys is not the result
    assert "flag=" not in rows["good"] and "name=" not in rows["good"]
    # A known benchmark shows its headline keys, text included; one row per backend.
    assert "backend=torchserve  failed=0  p99_ratio=1  swap_s=3.3" in rows["swap"]
    assert "threads" not in rows["swap"]
    after = fake_run["lines"][fake_run["lines"].index(rows["swap"]) + 1]
    assert after.lstrip().startswith("backend=triton") and "p99_ratio=1.15" in after
    assert done.returncode == 1, done.stderr


def test_the_last_json_line_sums_up_the_run(fake_run: dict[str, Any]) -> None:
    final = json.loads(fake_run["lines"][-1])
    runs = final["benchmarks"]
    assert list(runs) == ["good", "bad", "slow", "swap", "nojson"]
    assert runs["good"]["result"] == {"rows": 1000, "ratio": 0.5, "name": "x", "flag": True}
    assert runs["good"]["status"] == "ok" and runs["good"]["returncode"] == 0
    assert runs["bad"] == {**runs["bad"], "status": "failed rc 3", "returncode": 3,
                           "result": None}
    assert runs["slow"]["status"] == "timed out" and runs["slow"]["seconds"] < 10
    assert runs["swap"]["result"]["backend"] == "triton"
    assert [r["backend"] for r in runs["swap"]["results"]] == ["torchserve", "triton"]
    assert "results" not in runs["good"]  # {"early": 1} has other keys: not a result
    assert final["ok"] is False
    host = final["machine"]
    assert host["cpus"] == os.cpu_count()
    assert host["python"] == platform.python_version()
    assert host["memory_gib"] > 0
    assert (host["gpu"] is None) == (shutil.which("nvidia-smi") is None)
    # Before it, one JSON line per benchmark, in the order run.
    per_benchmark = [json.loads(line) for line in fake_run["lines"][-6:-1]]
    assert [r["benchmark"] for r in per_benchmark] == list(runs)
    assert json.loads((fake_run["out"] / "results.json").read_text()) == final


def test_logs_and_results_are_written_per_benchmark(fake_run: dict[str, Any]) -> None:
    out = fake_run["out"]
    assert "warming up" in (out / "good.log").read_text()
    assert "about to fail" in (out / "bad.log").read_text()
    assert json.loads((out / "good.json").read_text())["result"]["rows"] == 1000
    assert not (out / "_private.log").exists()
    # Progress on stderr: which benchmark, how it ended, and "still running" while it runs.
    err = fake_run["done"].stderr
    assert "[3/5] slow: started" in err and "slow: timed out after 2s" in err
    assert "slow: running for" in err and "[2/5] bad: failed rc 3" in err


def test_a_timed_out_benchmark_leaves_no_process_behind(fake_run: dict[str, Any]) -> None:
    pid = fake_run["child"]
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), f"the hung benchmark's child {pid} is still running"


def test_ctrl_c_stops_the_running_benchmark_and_the_rest(tmp_path: Path) -> None:
    package = _fake_package(tmp_path)
    pid_file = tmp_path / "child.pid"
    path = os.pathsep.join([str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")])
    runner = subprocess.Popen(
        [sys.executable, "-m", "bench", "--package", package, "--only", "slow", "good",
         "--grace", "5", "--out", "out"], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": path, "FAKE_CHILD_PID": str(pid_file)})
    deadline = time.monotonic() + 20
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    runner.send_signal(signal.SIGINT)
    stdout, stderr = runner.communicate(timeout=30)
    assert runner.returncode == 130, stderr
    runs = json.loads(stdout.splitlines()[-1])["benchmarks"]
    assert list(runs) == ["slow"] and runs["slow"]["status"] == "interrupted"
    deadline = time.monotonic() + 10
    while _alive(int(pid_file.read_text())) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(int(pid_file.read_text()))


def test_all_ok_exits_zero_and_skip_and_errors(tmp_path: Path) -> None:
    package = _fake_package(tmp_path)
    done = _runner(["--package", package, "--only", "swap", "good", "--skip", "swap",
                    "--out", "out"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert list(json.loads(done.stdout.splitlines()[-1])["benchmarks"]) == ["good"]
    listed = _runner(["--package", package, "--list"], tmp_path)
    assert [line.split()[0] for line in listed.stdout.splitlines()] == sorted(
        n for n in FAKES if not n.startswith("_"))
    unknown = _runner(["--package", package, "--only", "nope"], tmp_path)
    assert unknown.returncode == 2 and "unknown benchmark(s): nope" in unknown.stderr


def test_result_parsing_and_headlines() -> None:
    text = 'progress\n{"a": 1}\n[1, 2]\n{"b": 2.5, "ok": true, "s": "x"}\n{broken\n7\n'
    objects = json_objects(text)
    assert objects == [{"a": 1}, {"b": 2.5, "ok": True, "s": "x"}]
    assert headline("unknown", objects[-1]) == "b=2.5"
    store = {"ratio": 0.8, "store_rows_per_s": 123456, "query_p95_ms": 4.56789, "rows": 1}
    assert headline("store", store) == "store_rows_per_s=123,456  ratio=0.8  query_p95_ms=4.568"
    assert headline("drift", {"watchloop_s": 0.5, "evidently_s": None}) == (
        "watchloop_s=0.5  evidently_s=-")
    assert select(["a", "b", "c"], ["c", "a", "c"], ["a"]) == ["c"]
    with pytest.raises(ValueError, match="unknown"):
        select(["a"], None, ["z"])
