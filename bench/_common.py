"""Shared helpers for the benchmarks: arguments, timing, percentiles, data, profiling, output.

Every benchmark prints its progress to stderr and, last on stdout, exactly one JSON line with
its results (``emit_result``), so that a caller can keep ``stdout.splitlines()[-1]``.
Benchmarks report numbers only: none of them compares a timing against a threshold.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import math
import pstats
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_STARTED = time.perf_counter()

# --- arguments ------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    """An argparse type for counts written as ``1000000`` or ``1_000_000``."""
    value = int(text.replace("_", ""))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def base_parser(
    description: str, *, rows: int, batch: int, quick_rows: int
) -> argparse.ArgumentParser:
    """A parser with the options every benchmark shares: --rows, --batch, --quick, --seed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rows", type=positive_int, default=rows,
                        help=f"rows to load (default {rows:_})")
    parser.add_argument("--batch", type=positive_int, default=batch,
                        help=f"rows per insert batch (default {batch:_})")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run with {quick_rows:_} rows (overrides --rows)")
    parser.add_argument("--seed", type=int, default=20261125, help="seed of the generated data")
    parser.set_defaults(quick_rows=quick_rows)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> Any:
    """Parse, applying ``--quick`` to ``--rows``."""
    args = parser.parse_args(argv)
    if args.quick:
        args.rows = args.quick_rows
    return args


# --- output ---------------------------------------------------------------------------------


def log(message: str) -> None:
    """A progress line on stderr, prefixed with the seconds since the benchmark started."""
    print(f"[{time.perf_counter() - _STARTED:7.1f}s] {message}", file=sys.stderr, flush=True)


def emit_result(result: dict[str, Any]) -> None:
    """Print the result as one JSON line on stdout; call it once, last."""
    sys.stderr.flush()
    print(json.dumps(result, sort_keys=False, default=str), flush=True)


# --- timing and statistics ------------------------------------------------------------------


class Stopwatch:
    """Accumulates the wall time of the blocks it times (``with watch: ...``)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.samples: list[float] = []
        self._start = 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = time.perf_counter() - self._start
        self.samples.append(elapsed)
        self.total += elapsed


def timed(func: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``func`` once; return (seconds, its result)."""
    start = time.perf_counter()
    value = func()
    return time.perf_counter() - start, value


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation, as numpy's default method."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_summary_ms(seconds: Sequence[float], digits: int = 2) -> dict[str, float]:
    """p50, p95, max and mean of samples given in seconds, in milliseconds."""
    ms = [s * 1000.0 for s in seconds]
    return {
        "p50_ms": round(percentile(ms, 50), digits),
        "p95_ms": round(percentile(ms, 95), digits),
        "max_ms": round(max(ms), digits),
        "mean_ms": round(sum(ms) / len(ms), digits),
        "n": len(ms),
    }


def per_second(count: float, seconds: float) -> float:
    """A rate, rounded to whole units per second."""
    return round(count / seconds) if seconds > 0 else 0.0


# --- profiling ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileEntry:
    """One function of a cProfile run."""

    function: str
    calls: int
    tottime_s: float
    cumtime_s: float


def profile(func: Callable[[], Any]) -> tuple[float, Any, list[ProfileEntry], str]:
    """Run ``func`` under cProfile.

    Returns (wall seconds, its result, every function sorted by cumulative time, and the
    printed top 40 by cumulative time for a human).
    """
    profiler = cProfile.Profile()
    start = time.perf_counter()
    value = profiler.runcall(func)
    wall = time.perf_counter() - start
    stats = pstats.Stats(profiler)
    entries = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():
        where = f"{_short_path(filename)}:{line}({name})" if line else name
        entries.append(ProfileEntry(where, calls, tottime, cumtime))
    entries.sort(key=lambda e: e.cumtime_s, reverse=True)
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
    return wall, value, entries, text.getvalue()


def _short_path(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


# --- an embedded store in a temporary directory ---------------------------------------------


@contextlib.contextmanager
def temporary_directory(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A fresh directory under the system temp dir, removed afterwards unless ``keep``."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if keep:
            log(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


# --- realistic inference logs ---------------------------------------------------------------

#: (model, version, share of traffic, kind of prediction)
MODELS: tuple[tuple[str, str, float, str], ...] = (
    ("fraud", "7", 0.35, "score"),
    ("fraud", "8", 0.15, "score"),
    ("churn", "3", 0.25, "score"),
    ("intent", "12", 0.20, "class"),
    ("intent", "13", 0.05, "class"),
)
NUMERIC_FEATURES = (
    "amount", "account_age_days", "tx_count_24h", "tx_amount_7d_mean", "merchant_risk",
    "distance_km", "session_seconds", "device_score",
)
CATEGORICAL_FEATURES = {
    "country": ("DE", "FR", "US", "GB", "NL", "ES", "IT", "PL", "SE", "BR", "IN", "JP"),
    "channel": ("web", "ios", "android", "pos", "api"),
}
INTENT_CLASSES = ("purchase", "support", "cancel", "browse", "upgrade")
ERRORS = ("timeout after 200 ms", "CUDA out of memory", "feature store unavailable")
ERROR_SHARE = 0.01


def iso_millis(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC text, as producers send it: 2026-11-25T10:00:00.123Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


class LogGenerator:
    """Deterministic, realistic inference-log records, as parsed JSON dicts.

    Records arrive roughly in event-time order, as from a live stream: record ``i`` of
    ``total`` has its event time at ``i / total`` of the way from ``start_ms`` to ``end_ms``,
    give or take ``jitter_ms`` (never later than ``end_ms``). Five model versions share the
    traffic; each record has 8 numeric features (two of them integers) and 2 categorical ones,
    a score or a class as its prediction, and 1% are errors.
    """

    def __init__(self, seed: int, total: int, start_ms: int, end_ms: int,
                 jitter_ms: int = 30_000) -> None:
        self._rng = random.Random(seed)
        self._total = total
        self._start_ms = start_ms
        self._end_ms = end_ms
        self._jitter_ms = jitter_ms
        self._next = 0
        self._models = [m[:2] + (m[3],) for m in MODELS]
        self._weights = [m[2] for m in MODELS]

    @property
    def produced(self) -> int:
        """How many records were generated so far."""
        return self._next

    def batch(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` records."""
        rng = self._rng
        span = self._end_ms - self._start_ms
        picks = rng.choices(self._models, weights=self._weights, k=count)
        records = []
        for offset, (model, version, kind) in enumerate(picks):
            position = (self._next + offset) / max(self._total, 1)
            moment = self._start_ms + int(span * position)
            moment += rng.randint(-self._jitter_ms, self._jitter_ms)
            moment = min(max(moment, self._start_ms), self._end_ms)
            failed = rng.random() < ERROR_SHARE
            features: dict[str, Any] = {
                "amount": round(rng.lognormvariate(3.5, 1.2), 2),
                "account_age_days": rng.randint(0, 3650),
                "tx_count_24h": rng.randint(0, 40),
                "tx_amount_7d_mean": round(rng.lognormvariate(3.2, 0.9), 2),
                "merchant_risk": round(rng.random(), 4),
                "distance_km": round(rng.expovariate(0.05), 1),
                "session_seconds": round(rng.expovariate(1 / 90), 1),
                "device_score": round(rng.gauss(0.0, 1.0), 4),
                "country": rng.choice(CATEGORICAL_FEATURES["country"]),
                "channel": rng.choice(CATEGORICAL_FEATURES["channel"]),
            }
            if failed:
                prediction: Any = None
            elif kind == "score":
                prediction = round(rng.betavariate(1.2, 8.0), 5)
            else:
                prediction = rng.choice(INTENT_CLASSES)
            record = {
                "request_id": f"{rng.getrandbits(128):032x}",
                "model": model,
                "version": version,
                "event_time": iso_millis(moment),
                "latency_ms": round(rng.lognormvariate(1.6, 0.5) * (4 if failed else 1), 3),
                "status": "error" if failed else "ok",
                "features": features,
                "prediction": prediction,
            }
            if failed:
                record["error"] = rng.choice(ERRORS)
            records.append(record)
        self._next += count
        return records

