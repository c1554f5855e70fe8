"""Benchmark: ingest through the store layer against raw chDB, then the console's first page.

    python -m bench.store                # 1M rows in batches of 10k
    python -m bench.store --quick        # 100k-row smoke run
    python -m bench.store --rows 500_000 --batch 5_000

One process, one embedded chDB engine in a temporary directory, three databases on it:

* ``watchloop``        the store layer: ``TelemetryWriter(store).write_logs(records, source)``
                       on parsed-JSON dicts (pydantic validation, size and age checks, the
                       dedup lookup of stored request ids, the column insert);
* ``bench_raw_cc``     raw clickhouse-connect: ``client.insert(..., column_oriented=True)`` of
                       the column lists the writer would build, straight to the engine;
* ``bench_raw_arrow``  raw native chDB: the same column lists turned into a pyarrow Table,
                       then ``INSERT INTO ... SELECT * FROM Python(table)`` on a ``chdb``
                       connection.

All three run the bundled migrations, so each has the same ``inference_logs`` table with its
materialized view into ``inference_rollup_1m``. The same generated rows go to all three,
batch by batch, in an order that rotates every batch, so that load from other users of the
machine and background merges fall on each path alike. Raw timings start from the prepared
column lists (the writer's output) and include any conversion (the Arrow table); the rows
are generated and the columns prepared outside the timings. ``raw_rows_per_s`` is the faster
raw method, named in ``raw_method``; the checksums of the three tables are compared at the end.

Then, with the raw databases dropped and a few dead letters written, the queries of the
console's first page (the on-call grid of dashboard/data.py) run round-robin over the loaded
store, and
one more batch runs under cProfile to show where the writer spends its time (stderr only).

The last line on stdout is one JSON object. No timing is compared against a threshold.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from telemetry import Migrator, Store, StoreLocation, TelemetryWriter, open_store, queries
from telemetry.clock import utc_now

from ._common import (
    LogGenerator,
    Stopwatch,
    base_parser,
    emit_result,
    latency_summary_ms,
    log,
    parse_args,
    per_second,
    percentile,
    profile,
    temporary_directory,
    timed,
)

SOURCE = "bench"
RAW_CC_DB = "bench_raw_cc"
RAW_ARROW_DB = "bench_raw_arrow"
HOURS = 3  # event times span the last few hours, as a live stream that has run that long
WINDOW_MINUTES = 60  # the console's default time range ("1 hour")
LOG_COLUMNS = (
    "request_id", "model", "model_version", "event_time", "ingest_time", "latency_ms", "status",
    "error", "numeric_features", "categorical_features", "prediction", "prediction_label", "source",
)

#: A content checksum of a copy of inference_logs (all columns but ingest_time).
CHECKSUM_SQL = (
    "SELECT count(), groupBitXor(cityHash64(request_id, model, model_version, "
    "toUnixTimestamp64Milli(event_time), latency_ms, status, error, toString(numeric_features), "
    "toString(categorical_features), toString(prediction), prediction_label)) "
    "FROM {db}.inference_logs"
)


# --- the raw paths --------------------------------------------------------------------------


def writer_columns(records: list[dict[str, Any]], ingest_ms: int) -> dict[str, list[Any]]:
    """The column lists ``TelemetryWriter.write_logs`` builds for valid records.

    Converted the way the writer converts (event time via datetime, features split into
    numeric and categorical maps), so that all three tables end up with the same rows.
    """
    columns: dict[str, list[Any]] = {name: [] for name in LOG_COLUMNS}
    for record in records:
        numeric: dict[str, float] = {}
        categorical: dict[str, str] = {}
        for name, value in record["features"].items():
            if isinstance(value, str):
                categorical[name] = value
            elif value is not None:
                numeric[name] = float(value) + 0.0  # the store reads -0.0 as 0.0
        prediction = record.get("prediction")
        columns["request_id"].append(record["request_id"])
        columns["model"].append(record["model"])
        columns["model_version"].append(str(record["version"]))
        columns["event_time"].append(
            int(datetime.fromisoformat(record["event_time"]).timestamp() * 1000)
        )
        columns["ingest_time"].append(ingest_ms)
        columns["latency_ms"].append(float(record["latency_ms"]))
        columns["status"].append(record.get("status", "ok"))
        columns["error"].append(record.get("error", ""))
        columns["numeric_features"].append(numeric)
        columns["categorical_features"].append(categorical)
        columns["prediction"].append(None if isinstance(prediction, str) else prediction)
        columns["prediction_label"].append(prediction if isinstance(prediction, str) else "")
        columns["source"].append(SOURCE)
    return columns


def arrow_table(columns: dict[str, list[Any]]) -> Any:
    """The column lists as a pyarrow Table typed like inference_logs (maps built from flat
    key/value arrays and offsets: ~30x faster than pyarrow's per-row map conversion)."""
    import pyarrow as pa

    millis = pa.timestamp("ms", tz="UTC")
    types = {
        "event_time": millis, "ingest_time": millis, "latency_ms": pa.float64(),
        "prediction": pa.float64(),
    }
    arrays = []
    for name in LOG_COLUMNS:
        values = columns[name]
        if name in ("numeric_features", "categorical_features"):
            offsets, keys, items = [0], [], []
            for mapping in values:
                keys.extend(mapping)
                items.extend(mapping.values())
                offsets.append(len(keys))
            item_type = pa.float64() if name == "numeric_features" else pa.string()
            arrays.append(pa.MapArray.from_arrays(
                pa.array(offsets, pa.int32()), pa.array(keys, pa.string()),
                pa.array(items, item_type),
            ))
        else:
            arrays.append(pa.array(values, type=types.get(name, pa.string())))
    return pa.Table.from_arrays(arrays, names=list(LOG_COLUMNS))


class RawPaths:
    """The two raw insert paths, each into its own migrated database on the same engine."""

    def __init__(self, directory: Path) -> None:
        import chdb
        import clickhouse_connect

        self._cc = clickhouse_connect.get_client(dsn=f"chdb://{directory}")
        self._cc.command(f"CREATE DATABASE IF NOT EXISTS {RAW_CC_DB}")
        self._cc.database = RAW_CC_DB
        self._chdb = chdb.connect(str(directory))
        self._chdb.query(f"CREATE DATABASE IF NOT EXISTS {RAW_ARROW_DB}")
        for database in (RAW_CC_DB, RAW_ARROW_DB):
            client = self._cc if database == RAW_CC_DB else clickhouse_connect.get_client(
                dsn=f"chdb://{directory}", database=database
            )
            location = StoreLocation(url=f"chdb://{directory}?database={database}",
                                     backend="chdb", path=None, database=database)
            Migrator(Store(client, location)).migrate()
            if client is not self._cc:
                client.close()
        self.arrow_insert_seconds = 0.0  # the INSERT alone, without building the Arrow table

    def insert_cc(self, columns: dict[str, list[Any]]) -> int:
        names = list(columns)
        self._cc.insert("inference_logs", [columns[n] for n in names], column_names=names,
                        column_oriented=True)
        return len(columns["request_id"])

    def insert_arrow(self, columns: dict[str, list[Any]]) -> int:
        table = arrow_table(columns)  # noqa: F841 - read by chDB's Python() table function
        start = time.perf_counter()
        self._chdb.query(f"INSERT INTO {RAW_ARROW_DB}.inference_logs SELECT * FROM Python(table)")
        self.arrow_insert_seconds += time.perf_counter() - start
        return table.num_rows

    def drop(self) -> None:
        for database in (RAW_CC_DB, RAW_ARROW_DB):
            self._cc.command(f"DROP DATABASE IF EXISTS {database} SYNC")

    def close(self) -> None:
        self._chdb.close()
        self._cc.close()


SHORT = {"store": "store", "clickhouse_connect_column_insert": "raw cc",
         "chdb_insert_select_python_arrow": "raw arrow"}
RAW_METHODS = {
    "clickhouse_connect_column_insert": "clickhouse-connect client.insert(column_oriented=True) "
                                        "of the prepared column lists",
    "chdb_insert_select_python_arrow": "native chdb INSERT INTO ... SELECT * FROM "
                                       "Python(pyarrow.Table), Table built from the column lists",
}


# --- the console's first page ---------------------------------------------------------------


def first_page_queries(store: Store) -> dict[str, Callable[[], Any]]:
    """The queries the console's first page (the on-call grid, ``dashboard.data.grid``) and
    its model picker run, uncached."""
    from dashboard import sql

    end = utc_now()
    start, day = end - timedelta(minutes=WINDOW_MINUTES), end - timedelta(days=1)
    return {
        "models": lambda: sql.models(store, day),
        "traffic": lambda: queries.traffic(store, start, end + timedelta(minutes=1)),
        "drift_share": lambda: sql.latest_drift_share(store, day),
        "quality": lambda: sql.latest_monitor_values(store, "quality", day),
        "slo": lambda: sql.latest_monitor_values(store, "slo", day),
        "alerts": lambda: sql.alerts(store),
        "kafka_lag": lambda: queries.kafka_lag_by_group(store, 15, now=end),
        "collector_health": lambda: queries.collector_health(store),
        "gpus": lambda: queries.gpu_latest(store, 15, now=end),
    }


def bad_records(generator: LogGenerator, count: int, now_ms: int) -> list[Any]:
    """Invalid records of the kinds producers send, for the dead-letter panels."""
    records: list[Any] = []
    for index, record in enumerate(generator.batch(count)):
        kind = index % 5
        if kind == 0:
            record["latency_ms"] = -1.0
        elif kind == 1:
            del record["model"]
        elif kind == 2:
            record["event_time"] = "yesterday"
        elif kind == 3:
            record["event_time"] = (now_ms - 120 * 86_400_000) // 1000  # past the retention
        else:
            records.append(b'{"request_id": "r-1", "model": ')  # truncated JSON
            continue
        records.append(record)
    return records


# --- the benchmark --------------------------------------------------------------------------


def run(args: Any) -> dict[str, Any]:
    rows, batch_size = args.rows, min(args.batch, args.rows)
    batches = -(-rows // batch_size)
    with temporary_directory("watchloop-bench-store-", keep=args.keep) as directory:
        directory = directory.resolve()
        url = f"chdb://{directory}"
        log(f"store {url}: {rows:_} rows in {batches} batches of {batch_size:_}")
        store = open_store(url)
        raw = None
        try:
            Migrator(store).migrate()
            raw = RawPaths(directory)
            result = _measure(args, store, raw, rows, batch_size, batches)
        finally:
            if raw is not None:
                raw.close()
            store.close()
    return result


def _measure(args: Any, store: Store, raw: RawPaths, rows: int, batch_size: int,
             batches: int) -> dict[str, Any]:
    writer = TelemetryWriter(store)
    now_ms = int(time.time() * 1000)
    generator = LogGenerator(args.seed, rows, now_ms - HOURS * 3_600_000, now_ms)
    watches = {"store": Stopwatch(), "clickhouse_connect_column_insert": Stopwatch(),
               "chdb_insert_select_python_arrow": Stopwatch()}
    inserts: dict[str, Callable[[list[dict[str, Any]], dict[str, list[Any]]], int]] = {
        "store": lambda records, _columns: writer.write_logs(records, SOURCE).accepted,
        "clickhouse_connect_column_insert": lambda _records, columns: raw.insert_cc(columns),
        "chdb_insert_select_python_arrow": lambda _records, columns: raw.insert_arrow(columns),
    }
    order = list(inserts)
    written = dict.fromkeys(inserts, 0)
    load_before = os.getloadavg()
    report_every = max(batches // 10, 1)
    batch_rows: list[int] = []
    for number in range(batches):
        records = generator.batch(min(batch_size, rows - generator.produced))
        columns = writer_columns(records, int(time.time() * 1000))
        batch_rows.append(len(records))
        for name in order[number % 3:] + order[:number % 3]:
            with watches[name]:
                written[name] += inserts[name](records, columns)
        if (number + 1) % report_every == 0 or number + 1 == batches:
            rates = ", ".join(
                f"{SHORT[name]} {per_second(written[name], watch.total):,.0f}/s"
                for name, watch in watches.items()
            )
            log(f"batch {number + 1}/{batches}: {written['store']:_} rows; {rates}")
    load_after = os.getloadavg()

    checksums = {
        db: store.query(CHECKSUM_SQL.format(db=db))[0]
        for db in (store.database, RAW_CC_DB, RAW_ARROW_DB)
    }
    tables_match = len(set(checksums.values())) == 1 and written["store"] == rows
    log(f"checksums (rows, hash): {checksums} -> {'match' if tables_match else 'MISMATCH'}")

    store_rate = per_second(written["store"], watches["store"].total)
    raw_rates = {name: per_second(written[name], watches[name].total) for name in RAW_METHODS}
    raw_method = max(raw_rates, key=raw_rates.__getitem__)
    per_batch = watches["store"].samples
    tenth = max(len(per_batch) // 10, 1)

    raw.drop()  # the query phase sees only the store, with no merges of the copies running
    dead = writer.write_logs(bad_records(generator, max(rows // 1000, 50), now_ms), SOURCE)
    log(f"wrote {dead.rejected} dead letters; running the first-page queries")
    query_stats, all_samples, parts = _run_queries(store, args.query_runs)

    _profile_one_batch(store, writer, generator, batch_size)

    return {
        "store_rows_per_s": store_rate,
        "raw_rows_per_s": raw_rates[raw_method],
        "ratio": round(store_rate / raw_rates[raw_method], 3),
        "query_p95_ms": round(percentile([s * 1000 for s in all_samples], 95), 2),
        "query_p50_ms": round(percentile([s * 1000 for s in all_samples], 50), 2),
        "raw_method": raw_method,
        "raw_method_detail": RAW_METHODS[raw_method],
        "raw_rates": raw_rates,
        "raw_arrow_insert_only_rows_per_s": per_second(
            written["chdb_insert_select_python_arrow"], raw.arrow_insert_seconds
        ),
        "rows": written["store"],
        "batch_size": batch_size,
        "batches": batches,
        "store_seconds": round(watches["store"].total, 2),
        "raw_seconds": {name: round(watches[name].total, 2) for name in RAW_METHODS},
        "store_batch_ms": latency_summary_ms(per_batch, 1),
        "store_rows_per_s_first_10pct_batches": per_second(
            sum(batch_rows[:tenth]), sum(per_batch[:tenth])
        ),
        "store_rows_per_s_last_10pct_batches": per_second(
            sum(batch_rows[-tenth:]), sum(per_batch[-tenth:])
        ),
        "tables_match": tables_match,
        "queries": query_stats,
        "query_runs_per_query": args.query_runs,
        "query_window_minutes": WINDOW_MINUTES,
        "dead_letters": dead.rejected,
        "active_parts_at_queries": parts,
        "engine": "chDB on disk (temporary directory), one engine, databases "
                  f"watchloop/{RAW_CC_DB}/{RAW_ARROW_DB}",
        "chdb_version": _version("chdb"),
        "clickhouse_connect_version": _version("clickhouse-connect"),
        "cpus": os.cpu_count(),
        "loadavg_1m_before_after_load": [round(load_before[0], 2), round(load_after[0], 2)],
        "quick": bool(args.quick),
    }


def _run_queries(store: Store, runs: int) -> tuple[dict[str, Any], list[float], int]:
    """Each first-page query ``runs`` times, round-robin after one untimed warm-up round."""
    parts = int(store.scalar(
        "SELECT count() FROM system.parts WHERE database = {db:String} "
        "AND table = 'inference_logs' AND active", {"db": store.database}
    ))
    calls = first_page_queries(store)
    for call in calls.values():
        call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            seconds, _value = timed(call)
            samples[name].append(seconds)
    stats = {name: latency_summary_ms(values) for name, values in samples.items()}
    for name, stat in stats.items():
        log(f"query {name}: p50 {stat['p50_ms']} ms, p95 {stat['p95_ms']} ms")
    return stats, [s for values in samples.values() for s in values], parts


#: (where, function, what it is): the writer's parts whose cumulative time the profile reports.
PROFILE_PARTS = (
    ("ingest.py", "(write_logs)", "write_logs, all of it"),
    ("ingest.py", "(_parse)", "validation: _parse (record-size check + pydantic)"),
    ("main.py", "(model_validate)", "  pydantic model_validate"),
    ("json/__init__.py", "(dumps)", "  json.dumps for the record-size check"),
    ("records.py", "(split_features)", "split_features"),
    ("ingest.py", "(_check_age)", "_check_age"),
    ("ingest.py", "(_ticks)", "_ticks (datetime -> epoch ms)"),
    ("ingest.py", "(_drop_stored_logs)", "dedup lookup: _drop_stored_logs (query of stored ids)"),
    ("store.py", "(insert_columns)", "insert: Store.insert_columns"),
)


def _profile_one_batch(
    store: Store, writer: TelemetryWriter, generator: LogGenerator, size: int
) -> None:
    """Two more batches (fresh rows, the newest event times) into the loaded store, stderr only.

    The first runs with timers around the writer's three stages (cheap, so its numbers are
    close to an ordinary batch); the second under cProfile, for the detail (which inflates
    the Python parts roughly twofold).
    """
    now_ms = int(time.time() * 1000)
    fresh = LogGenerator(generator.produced + 1, 2 * size, now_ms - 60_000, now_ms, 1_000)
    timed_records, profiled_records = fresh.batch(size), fresh.batch(size)

    stages, wall = _timed_stages(store, timed_records)
    log(f"one batch of {size:_} into the loaded store, stage timers: {wall * 1000:.0f} ms")
    for stage, seconds in stages.items():
        log(f"  {stage:64s} {seconds * 1000:8.1f} ms ({seconds / wall:5.1%})")

    wall, result, entries, text = profile(lambda: writer.write_logs(profiled_records, SOURCE))
    log(f"one batch of {size:_} under cProfile: {wall * 1000:.0f} ms; "
        f"accepted {result.accepted}, duplicates {result.duplicates}")
    for where, function, label in PROFILE_PARTS:
        found = [e for e in entries if where in e.function and e.function.endswith(function)]
        if found:
            entry = found[0]
            log(f"  {label:64s} {entry.cumtime_s * 1000:8.1f} ms "
                f"({entry.cumtime_s / wall:5.1%}, {entry.calls} calls)")
            if function == "(write_logs)":
                log(f"  {'  of which in write_logs itself (building the columns)':64s} "
                    f"{entry.tottime_s * 1000:8.1f} ms ({entry.tottime_s / wall:5.1%})")
    print(text, file=sys.stderr)


def _timed_stages(store: Store, records: list[Any]) -> tuple[dict[str, float], float]:
    """Run ``write_logs`` once with timers around its stages; return them and the wall time.

    Wraps the writer's ``_parse`` and ``_drop_stored_logs`` and the store's ``insert_columns``
    on a fresh writer, and for this call only (instance attributes, removed afterwards).
    """
    probe = TelemetryWriter(store)
    spent = {"validation: _parse (record-size check + pydantic)": 0.0,
             "dedup lookup: _drop_stored_logs (query of stored ids)": 0.0,
             "insert: Store.insert_columns": 0.0}
    labels = list(spent)

    def timer(label: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - start
        return call

    # Private names: a stage the writer no longer has (after a refactor) is left out.
    for label, (owner, attribute) in zip(
        labels, ((probe, "_parse"), (probe, "_drop_stored_logs"), (store, "insert_columns")),
        strict=True,
    ):
        if hasattr(owner, attribute):
            setattr(owner, attribute, timer(label, getattr(owner, attribute)))
        else:
            del spent[label]
    try:
        wall, _result = timed(lambda: probe.write_logs(records, SOURCE))
    finally:
        if "insert_columns" in vars(store):
            del store.insert_columns
    spent["the rest: column building, split_features, age check, _ticks"] = (
        wall - sum(spent.values())
    )
    return spent, wall


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0], rows=1_000_000, batch=10_000,
                         quick_rows=100_000)
    parser.add_argument("--query-runs", type=int, default=30,
                        help="timed runs of each first-page query (default 30)")
    parser.add_argument("--keep", action="store_true", help="keep the store directory")
    args = parse_args(parser, argv)
    emit_result(run(args))


if __name__ == "__main__":
    main()
