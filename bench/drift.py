"""Benchmark: Watchloop's drift in ClickHouse against Evidently's DataDriftPreset, same data.

    python -m bench.drift                 # 1M rows x 10 numeric features (Evidently: ~1 min)
    python -m bench.drift --quick         # 100k rows
    python -m bench.drift --rows 300_000 --bins 500

One process, one embedded store in a temporary directory. The reference (training data) and
the current window have ``--rows`` rows each and 10 numeric features of assorted shapes
(normal, lognormal, exponential, uniform, integer-valued); five features of the current
window drift (a shifted mean, a wider spread, a heavier tail) and five do not.

Not timed: generating the data, loading the current window into ``inference_logs`` in
batches of ``--batch`` rows (as a collector would; parts are not force-merged), and building
the reference profile from the training frame (``profile_s``, a one-off per model version).
Timed:

* ``watchloop_s``: ``DriftMonitor.evaluate`` for the window (the histograms over the
  reference edges in SQL, then the statistics), the median of ``--repeat`` runs; the first,
  cold run is ``watchloop_first_s``;
* ``evidently_s``: ``Report([DataDriftPreset()]).run(current, reference)`` on the same two
  DataFrames, once.

Both use the default methods: normed Wasserstein for every column (over 1,000 reference rows
and more than 5 values). ``max_score_diff`` is the largest |Watchloop - Evidently| over the
columns' drift scores; ``decisions_agree`` counts the columns with the same verdict.
The last line on stdout is one JSON object. No timing is compared against a threshold.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from drift import DriftMonitor, DriftSettings, ProfileBuilder, ProfileSettings
from drift.frames import log_columns
from telemetry import Migrator, open_store

from ._common import base_parser, emit_result, log, parse_args, temporary_directory, timed

MODEL, VERSION = "bench", "1"
FEATURES = 10


def make_frame(rows: int, seed: int, drifted: bool) -> pd.DataFrame:
    """Ten numeric features; with ``drifted``, the last five have moved."""
    rng = np.random.default_rng(seed)
    d = 1.0 if drifted else 0.0
    return pd.DataFrame({
        "f0_normal": rng.normal(0.0, 1.0, rows),
        "f1_lognormal": rng.lognormal(3.0, 1.0, rows),
        "f2_exponential": rng.exponential(20.0, rows),
        "f3_uniform": rng.uniform(0.0, 1.0, rows),
        "f4_integer": rng.integers(0, 3650, rows).astype(np.float64),
        "f5_shifted": rng.normal(0.3 * d, 1.0, rows),
        "f6_wider": rng.normal(0.0, 1.0 + 0.5 * d, rows),
        "f7_heavier": rng.standard_t(30 - 27 * d, rows),
        "f8_skewed": rng.gamma(2.0 + 2.0 * d, 1.0, rows),
        "f9_rounded": np.round(rng.normal(50.0 + 2.0 * d, 10.0, rows), 1),
    })


def load(store: Any, frame: pd.DataFrame, start: datetime, batch: int) -> None:
    """Insert the frame as inference logs spread over an hour, in batches."""
    start_ms = int(start.timestamp() * 1000)
    times = np.linspace(start_ms, start_ms + 3_599_000, len(frame)).astype(np.int64)
    for low in range(0, len(frame), batch):
        part = frame.iloc[low:low + batch]
        columns = log_columns(part, MODEL, VERSION, times[low:low + batch], start_ms,
                              request_ids=[f"r{i}" for i in range(low, low + len(part))])
        store.insert_columns("inference_logs", columns)


def run_evidently(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[float, dict]:
    """Evidently's DataDriftPreset: seconds, and its score per column."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=list(reference.columns))
    ref = Dataset.from_pandas(reference, data_definition=definition)
    cur = Dataset.from_pandas(current, data_definition=definition)
    seconds, snapshot = timed(lambda: Report([DataDriftPreset()]).run(current_data=cur,
                                                                     reference_data=ref))
    scores = {m["config"]["column"]: (m["config"]["method"], float(m["value"]))
              for m in snapshot.dict()["metrics"]
              if m["config"]["type"] == "evidently:metric_v2:ValueDrift"}
    return seconds, scores


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0], rows=1_000_000, batch=100_000,
                         quick_rows=100_000)
    parser.add_argument("--bins", type=int, default=ProfileSettings().bins,
                        help="quantile bins of the reference profile")
    parser.add_argument("--repeat", type=int, default=3, help="timed Watchloop runs")
    parser.add_argument("--skip-evidently", action="store_true",
                        help="time Watchloop only (evidently_s and the diffs are null)")
    args = parse_args(parser, argv)
    rows = args.rows
    log(f"generating 2 x {rows:_} rows x {FEATURES} features")
    reference = make_frame(rows, args.seed, drifted=False)
    current = make_frame(rows, args.seed + 1, drifted=True)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    end = start + timedelta(hours=1)

    with temporary_directory("watchloop-bench-drift-") as directory:
        store = open_store(f"chdb://{directory}/store")
        try:
            Migrator(store).migrate()
            load_s, _ = timed(lambda: load(store, current, start, args.batch))
            log(f"loaded {rows:_} rows in {load_s:.1f}s")
            builder = ProfileBuilder(settings=ProfileSettings(bins=args.bins))
            profile_s, profile = timed(lambda: builder.from_frame(reference, MODEL, VERSION))
            log(f"reference profile in {profile_s:.2f}s")
            monitor = DriftMonitor(store, DriftSettings())
            times, report = [], None
            for _ in range(max(args.repeat, 1)):
                seconds, report = timed(lambda: monitor.evaluate(profile, start, end))
                times.append(seconds)
                log(f"watchloop drift in {seconds:.3f}s")
            assert report is not None and report.rows == rows
        finally:
            store.close()

    result: dict[str, Any] = {
        "rows": rows,
        "reference_rows": rows,
        "features": FEATURES,
        "watchloop_s": round(statistics.median(times), 3),
        "watchloop_first_s": round(times[0], 3),
        "evidently_s": None,
        "speedup": None,
        "max_score_diff": None,
        "decisions_agree": None,
        "profile_s": round(profile_s, 3),
        "bins": args.bins,
        "drifted_features": report.drifted_features,
        "methods": sorted({c.method for c in report.features}),
    }
    if not args.skip_evidently:
        log("running Evidently's DataDriftPreset (about a minute per million rows)")
        evidently_s, scores = run_evidently(reference, current)
        log(f"evidently in {evidently_s:.1f}s")
        diffs = {c.column: abs(c.score - scores[c.column][1]) for c in report.features}
        agree = sum((c.score >= c.threshold) == (scores[c.column][1] >= c.threshold)
                    for c in report.features)
        result.update(
            evidently_s=round(evidently_s, 2),
            speedup=round(evidently_s / result["watchloop_s"], 1),
            max_score_diff=float(f"{max(diffs.values()):.3g}"),
            decisions_agree=f"{agree}/{len(report.features)}",
        )
        worst = max(diffs, key=lambda name: diffs[name])
        log(f"largest score difference on {worst}: watchloop "
            f"{report.get(worst).score:.5f}, evidently {scores[worst][1]:.5f}")
    emit_result(result)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    log(f"done in {time.perf_counter() - started:.0f}s")
