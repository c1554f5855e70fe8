"""Inference logs into the store: from Kafka and over HTTP, against a raw insert.

    python -m bench.ingest [--rows N] [--per-message K] [--quick] [--store embedded|server]

``--store server`` runs every measurement against a ClickHouse server (chdb-core's HTTP
listener, ``watchloop.services.ClickHouseServer``) instead of embedded chDB, and adds
``kafka_processes_rows_per_s``: two ``watchloop up`` collector processes in one consumer group
sharing a 4-partition topic into the server, with the rows/s of each (``per_process``).

One process, one chDB engine, a real Tansu broker and the real HTTP API on loopback:

- ``raw_rows_per_s``: the same records, already turned into columns, inserted with
  clickhouse-connect's column-oriented insert (no parsing, no validation, no dedup).
- ``kafka_rows_per_s``: JSON records produced beforehand (``--per-message`` records per Kafka
  message, JSON Lines), consumed by the collector runner's Kafka source, validated, deduped,
  stored, committed. Timed from the first stored batch (after the consumer group joined) to
  the last record queryable.
- ``http_rows_per_s``: JSON Lines bodies of ``--batch`` records POSTed to ``/v1/logs`` by
  two client threads.
- ``small_batch_rows_per_s``: 8 concurrent clients POSTing 50-record JSON arrays;
  ``tiny_rows_per_s``: 32 concurrent clients POSTing one record each; ``small_batch_ratio``:
  small over ``http_rows_per_s`` (one client's 10,000-record bodies) in the same run.
- ``ack_p99_ms_at_2k``: 100-record requests sent on a schedule at 2,000 records/s; the time
  from each request's scheduled send to its answer (queueing included).
- ``freshness_under_load_p99_ms``: the freshness run below again, while console queries and
  the monitors run in a loop on the same store.
- ``freshness_p99_ms``: at a fixed rate (``--fresh-rate`` records/s for ``--fresh-seconds``),
  records are produced to Kafka stamped with their send time; a probe counts the queryable
  ones every 20 ms, and each record's freshness is the probe time that first saw it minus its
  event time (so it includes up to one probe interval).
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from prometheus_client import CollectorRegistry

from bench._common import (
    LogGenerator,
    base_parser,
    emit_result,
    iso_millis,
    log,
    parse_args,
    per_second,
    percentile,
    temporary_directory,
)
from collectors.kafka_source import KafkaSource, KafkaSourceSettings
from collectors.runner import CollectorRunner, RunnerSettings
from telemetry import Migrator, TelemetryWriter, open_store
from telemetry.intake import LOG_COLUMNS
from telemetry.records import InferenceLogRecord, split_features
from watchloop.api import create_app
from watchloop.metrics import ShellMetrics
from watchloop.services import KafkaBroker
from watchloop.shell import ApiServer


def _columns(records: list[dict], ingest_ms: int) -> dict[str, list]:
    """Records as the columns the raw insert takes (prepared outside the timed section)."""
    columns: dict[str, list] = {name: [] for name in LOG_COLUMNS}
    for raw in records:
        record = InferenceLogRecord.model_validate(raw)
        numeric, categorical = split_features(record.features)
        prediction = record.prediction
        columns["request_id"].append(record.request_id)
        columns["model"].append(record.model)
        columns["model_version"].append(str(record.version))
        columns["event_time"].append(int(record.event_time.timestamp() * 1000))
        columns["ingest_time"].append(ingest_ms)
        columns["latency_ms"].append(record.latency_ms)
        columns["status"].append(record.status)
        columns["error"].append(record.error)
        columns["numeric_features"].append(numeric)
        columns["categorical_features"].append(categorical)
        columns["prediction"].append(None if isinstance(prediction, str) else prediction)
        columns["prediction_label"].append(prediction if isinstance(prediction, str) else "")
        columns["source"].append("raw")
    return columns


def _count(store: Any, source: str) -> int:
    return store.scalar("SELECT count() FROM inference_logs WHERE source = {s:String}",
                        {"s": source})


def bench_raw(store: Any, records: list[dict], batch: int) -> float:
    columns = _columns(records, int(time.time() * 1000))
    started = time.perf_counter()
    for i in range(0, len(records), batch):
        store.insert_columns("inference_logs", {k: v[i:i + batch] for k, v in columns.items()})
    return per_second(len(records), time.perf_counter() - started)


def _producer(broker: KafkaBroker) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=20,
                         batch_size=1_000_000, max_request_size=8_000_000)


def _create_topic(broker: KafkaBroker, topic: str, partitions: int) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1}})
    admin.close()


def _runner(store: Any, broker: KafkaBroker, topic: str, settings: RunnerSettings,
            name: str) -> CollectorRunner:
    source = KafkaSource(KafkaSourceSettings(
        name=name, bootstrap_servers=broker.bootstrap_servers, group_id=f"bench-{topic}",
        log_topics=[topic], session_timeout_ms=6000))
    return CollectorRunner(store, TelemetryWriter(store), sources=[source], settings=settings)


def _wait_for(store: Any, source: str, expected: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while (count := _count(store, source)) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{source}: only {count} of {expected} stored in {timeout}s")
        time.sleep(0.05)
    return time.perf_counter()


def _produce(broker: KafkaBroker, topic: str, partitions: int, records: list[dict],
             per_message: int) -> None:
    """A new topic holding the records as JSON Lines, ``per_message`` to a message."""
    _create_topic(broker, topic, partitions)
    producer = _producer(broker)
    lines = [json.dumps(r).encode() for r in records]
    for i in range(0, len(lines), per_message):
        producer.send(topic, b"\n".join(lines[i:i + per_message]))
    producer.flush()
    producer.close()
    log(f"{topic}: produced {len(records):,} records in {len(lines) // per_message:,} messages")


def bench_kafka(store: Any, broker: KafkaBroker, records: list[dict], per_message: int,
                batch: int) -> float:
    topic = "bench-logs"
    _produce(broker, topic, 3, records, per_message)
    runner = _runner(store, broker, topic,
                     RunnerSettings(batch_size=batch, flush_interval_s=0.5), "kafka")
    runner.start()
    try:
        # Time from the first stored batch, so the group join (seconds on Tansu) is excluded.
        first = _wait_for(store, "kafka", 1, timeout=120)
        already = _count(store, "kafka")
        finished = _wait_for(store, "kafka", len(records), timeout=900)
    finally:
        runner.stop()
    return per_second(len(records) - already, finished - first)


class _Poster:
    """The real API over ``store`` on a loopback port, and POSTs to it from many threads
    (one HTTP session per thread)."""

    def __init__(self, store: Any, *, max_body_bytes: int = 256 * 1024 * 1024) -> None:
        app = create_app(store, TelemetryWriter(store), ShellMetrics(CollectorRegistry()),
                         max_body_bytes=max_body_bytes)
        self.server = ApiServer(app, "127.0.0.1", 0)
        self.server.start()
        self._local = threading.local()

    def post(self, body: bytes | str, content_type: str) -> int:
        """POST a body of logs; the number of records accepted."""
        session = getattr(self._local, "session", None) or requests.Session()
        self._local.session = session
        response = session.post(f"{self.server.url}/v1/logs", data=body, timeout=300,
                                headers={"Content-Type": content_type})
        response.raise_for_status()
        return response.json()["accepted"]

    def rows_per_s(self, bodies: list, content_type: str, clients: int, expected: int,
                   name: str) -> float:
        """Post every body from ``clients`` threads; records/s; then stop the server."""
        started = time.perf_counter()
        try:
            with ThreadPoolExecutor(max_workers=clients) as pool:
                accepted = sum(pool.map(lambda body: self.post(body, content_type), bodies))
        finally:
            elapsed = time.perf_counter() - started
            self.server.stop()
        if accepted != expected:
            raise RuntimeError(f"{name}: {accepted} of {expected} accepted")
        return per_second(expected, elapsed)


def bench_http(store: Any, records: list[dict], batch: int) -> float:
    for record in records:
        record["request_id"] = "h" + record["request_id"][1:]
    bodies = ["\n".join(json.dumps(r) for r in records[i:i + batch]).encode()
              for i in range(0, len(records), batch)]
    return _Poster(store).rows_per_s(bodies, "application/x-ndjson", 2, len(records), "http")


def bench_small_requests(store: Any, records: list[dict], clients: int, per_request: int,
                         prefix: str) -> float:
    """Records/s when ``clients`` threads each POST ``per_request`` records at a time."""
    for record in records:
        record["request_id"] = prefix + record["request_id"][1:]
    bodies = [json.dumps(records[i:i + per_request])
              for i in range(0, len(records), per_request)]
    return _Poster(store).rows_per_s(bodies, "application/json", clients, len(records), prefix)


def bench_ack_latency(store: Any, generator: LogGenerator, rate: int, per_request: int,
                      seconds: float) -> list[float]:
    """Answer latency (ms) of requests sent on a fixed schedule, from their due time."""
    poster = _Poster(store)
    interval = per_request / rate
    count = int(seconds / interval)
    bodies = []
    for n in range(count):
        batch = generator.batch(per_request)
        for record in batch:
            record["request_id"] = f"a{n}-" + record["request_id"]
        bodies.append(json.dumps(batch))
    latencies: list[float] = []
    started = time.perf_counter()

    def send(n: int) -> None:
        due = started + n * interval
        time.sleep(max(0.0, due - time.perf_counter()))
        poster.post(bodies[n], "application/json")
        latencies.append((time.perf_counter() - due) * 1000)

    try:
        with ThreadPoolExecutor(max_workers=64) as pool:
            list(pool.map(send, range(count)))
    finally:
        poster.server.stop()
    return latencies


def _console_and_monitors(store: Any, stop: threading.Event) -> threading.Thread:
    """The console's heaviest reads and a monitor pass, in a loop, until ``stop``."""
    from datetime import UTC, datetime

    from drift import MonitorRunner
    from drift.settings import MonitorSettings
    from telemetry import queries

    monitors = MonitorRunner(MonitorSettings(), store)

    def loop() -> None:
        while not stop.is_set():
            queries.table_summaries(store)
            queries.model_traffic(store, 60)
            queries.dead_letter_reasons(store)
            monitors.run_once(datetime.now(UTC))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def bench_freshness(store: Any, broker: KafkaBroker, rate: int, seconds: float,
                    seed: int, topic: str = "bench-fresh") -> list[float]:
    _create_topic(broker, topic, 1)
    runner = _runner(store, broker, topic,
                     RunnerSettings(batch_size=5000, flush_interval_s=0.05,
                                    poll_timeout_s=0.02), topic)
    runner.start()
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=0)
    # Warm up: the group join takes a few seconds. A record with only a marker in it is
    # dead-lettered, which says the collector is consuming.
    producer.send(topic, json.dumps({"warm_up": topic}).encode())
    producer.flush()
    _wait_for_dead_letter(store, topic)
    generator = LogGenerator(seed, 1, 0, 0)
    sent_at: list[float] = []
    seen_at: list[float] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set() or len(seen_at) < len(sent_at):
            count = _count(store, topic)
            now = time.time()
            seen_at.extend([now] * (count - len(seen_at)))
            time.sleep(0.02)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    total = int(rate * seconds)
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    started = time.monotonic()
    while len(sent_at) < total:
        due = int((time.monotonic() - started) * rate)
        while len(sent_at) < min(due, total):
            for record in generator.batch(min(per_tick, total - len(sent_at))):
                now = time.time()
                record["event_time"] = iso_millis(int(now * 1000))
                producer.send(topic, json.dumps(record).encode())
                sent_at.append(now)
        producer.flush()
        time.sleep(tick)
    done.set()
    prober.join(timeout=60)
    runner.stop()
    producer.close()
    return [(seen - sent) * 1000 for sent, seen in zip(sent_at, seen_at, strict=False)]


def _wait_for_dead_letter(store: Any, source: str) -> None:
    deadline = time.monotonic() + 60
    while not store.scalar("SELECT count() FROM dead_letters WHERE source = {s:String}",
                           {"s": source}):
        if time.monotonic() > deadline:
            raise RuntimeError("the freshness collector did not start consuming in 60 s")
        time.sleep(0.05)


def bench_kafka_processes(server: Any, broker: KafkaBroker, records: list[dict],
                          per_message: int, workdir: Any) -> dict[str, float]:
    """Two collector processes in one group, storing one topic into the server."""
    import os
    import subprocess
    import sys

    from telemetry.store import PASSWORD_ENV
    from watchloop.services.base import free_port

    topic = "bench-shared"
    _produce(broker, topic, 4, records, per_message)
    url = server.url()
    processes = []
    for name in ("proc-a", "proc-b"):
        config = {"data_dir": str(workdir / name),
                  "store": {"type": "clickhouse", "url": url,
                            "password": "${WATCHLOOP_CLICKHOUSE_PASSWORD}"},
                  "api": {"port": free_port()}, "console": {"enabled": False},
                  "collectors": {"runner": {"batch_size": 10_000, "flush_interval_s": 0.5},
                                 "sources": [{"type": "kafka", "name": name,
                                              "group_id": "bench-shared",
                                              "bootstrap_servers": broker.bootstrap_servers,
                                              "log_topics": [topic]}]}}
        path = workdir / f"{name}.yaml"
        path.write_text(json.dumps(config))
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "watchloop.cli", "-c", str(path), "up"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, PASSWORD_ENV: server.password}))
    store = open_store(url, password=server.password)
    try:
        first = _wait_for_any(store, ("proc-a", "proc-b"), 1, timeout=180)
        finished = _wait_for_any(store, ("proc-a", "proc-b"), len(records), timeout=900)
        per_source = dict(store.query(
            "SELECT source, count() FROM inference_logs WHERE source IN ('proc-a', 'proc-b') "
            "GROUP BY source"))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        store.close()
    # From the first stored row (both processes have started) to the last.
    elapsed = finished - first
    return {"total": per_second(len(records), elapsed),
            **{name: per_second(count, elapsed) for name, count in per_source.items()}}


def _count_sources(store: Any, sources: tuple[str, ...]) -> int:
    return store.scalar("SELECT count() FROM inference_logs WHERE source IN {s:Array(String)}",
                        {"s": list(sources)})


def _wait_for_any(store: Any, sources: tuple[str, ...], expected: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while (count := _count_sources(store, sources)) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {count} of {expected} stored in {timeout}s")
        time.sleep(0.05)
    return time.perf_counter()


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], rows=200_000, batch=10_000, quick_rows=20_000)
    parser.add_argument("--per-message", type=int, default=100,
                        help="records per Kafka message (default 100)")
    parser.add_argument("--fresh-rate", type=int, default=2_000)
    parser.add_argument("--fresh-seconds", type=float, default=10.0)
    parser.add_argument("--store", choices=("embedded", "server"), default="embedded",
                        help="embedded chDB (default) or a ClickHouse server")
    args = parse_args(parser)
    now_ms = int(time.time() * 1000)
    processes: dict[str, float] = {}
    with temporary_directory("watchloop-bench-ingest-") as workdir:
        server = None
        if args.store == "server":
            from watchloop.services import ClickHouseServer

            server = ClickHouseServer(workdir / "clickhouse").start()
            store = open_store(server.url(), password=server.password)
        else:
            store = open_store(f"chdb://{workdir / 'store'}")
        Migrator(store).migrate()
        broker = KafkaBroker(workdir / "kafka").start()
        try:
            generator = LogGenerator(args.seed, args.rows * 3, now_ms - 3_600_000, now_ms)
            raw = bench_raw(store, generator.batch(args.rows), args.batch)
            log(f"raw insert: {raw:,.0f} rows/s")
            kafka = bench_kafka(store, broker, generator.batch(args.rows), args.per_message,
                                args.batch)
            log(f"kafka: {kafka:,.0f} rows/s")
            http = bench_http(store, generator.batch(args.rows), args.batch)
            log(f"http: {http:,.0f} rows/s")
            freshness = bench_freshness(store, broker, args.fresh_rate, args.fresh_seconds,
                                        args.seed + 1)
            log(f"freshness over {len(freshness):,} records: "
                f"p50 {percentile(freshness, 50):.0f} ms, p99 {percentile(freshness, 99):.0f} ms")
            small_rows = max(4_000, args.rows // 10)
            small = bench_small_requests(store, generator.batch(small_rows), 8, 50, "s")
            log(f"small requests (8 clients x 50 records): {small:,.0f} rows/s")
            tiny = bench_small_requests(store, generator.batch(max(1_000, args.rows // 100)),
                                        32, 1, "t")
            log(f"tiny requests (32 clients x 1 record): {tiny:,.0f} rows/s")
            acks = bench_ack_latency(store, generator, 2_000, 100, args.fresh_seconds)
            log(f"acknowledgements at 2,000 records/s: p50 {percentile(acks, 50):.0f} ms, "
                f"p99 {percentile(acks, 99):.0f} ms")
            stop = threading.Event()
            loader = _console_and_monitors(store, stop)
            try:
                loaded = bench_freshness(store, broker, args.fresh_rate, args.fresh_seconds,
                                         args.seed + 2, topic="bench-fresh-loaded")
            finally:
                stop.set()
                loader.join(timeout=120)
            log(f"freshness under console and monitor load: p99 "
                f"{percentile(loaded, 99):.0f} ms")
            if server is not None:
                processes = bench_kafka_processes(server, broker, generator.batch(args.rows),
                                                  args.per_message, workdir)
                log(f"two collector processes into the server: {processes['total']:,.0f} "
                    f"rows/s in total, {processes}")
        finally:
            broker.stop()
            store.close()
            if server is not None:
                server.stop()
    result: dict[str, Any] = {
        "store": args.store,
        "rows": args.rows,
        "per_message": args.per_message,
        "kafka_rows_per_s": round(kafka),
        "http_rows_per_s": round(http),
        "raw_rows_per_s": round(raw),
        "ratio": round(max(kafka, http) / raw, 3),
        "freshness_p50_ms": round(percentile(freshness, 50), 1),
        "freshness_p99_ms": round(percentile(freshness, 99), 1),
        "fresh_rate_per_s": args.fresh_rate,
        "small_batch_rows_per_s": round(small),
        "tiny_rows_per_s": round(tiny),
        "small_batch_ratio": round(small / http, 3),
        "ack_p99_ms_at_2k": round(percentile(acks, 99), 1),
        "freshness_under_load_p99_ms": round(percentile(loaded, 99), 1),
    }
    if processes:
        result["kafka_processes_rows_per_s"] = round(processes.pop("total"))
        result["per_process_rows_per_s"] = {k: round(v) for k, v in processes.items()}
    emit_result(result)


if __name__ == "__main__":
    main()
