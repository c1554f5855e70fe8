"""Alerting: breach-to-page latency through Watchloop and through Prometheus + Alertmanager,
and backtests in one query against a step-by-step replay.

1. **Latency.** Each breach writes a p99 of 80 ms for a new model version into the store and
   sets the same gauge on a Prometheus exporter, at the same moment. Watchloop's evaluator
   (rule interval ``--interval``, real Redis) pages a webhook through its outbox; Prometheus
   (1 s scrape and evaluation) fires the same rule to Alertmanager (1 s ``group_wait``), which
   posts to its webhook. Times are from the write to each webhook's arrival.
2. **Backtests.** A threshold rule over 7 days of per-minute monitor results, and a query
   rule over 7 days of ``--rows`` inference logs at 1-minute steps, each timed as one
   backtest (every step in one query) and as a replay that issues one query per step (timed
   over ``--replay-steps`` evenly spread steps and scaled to all of them: the full replay
   would take hours).

Needs redis-server, prometheus and prometheus-alertmanager (scripts/system-deps.sh).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from ._common import base_parser, emit_result, log, parse_args, percentile, temporary_directory

MODEL = "fraud"


def _receiver() -> Any:
    from watchloop.services.receiver import HttpReceiver

    return HttpReceiver()


def latency(directory: Any, breaches: int, interval: str) -> dict[str, float]:
    import redis
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    from alerts.evaluator import AlertEvaluator
    from alerts.settings import AlertsSettings
    from alerts.sinks import WebhookSink
    from drift.results import ResultWriter
    from telemetry import Migrator, open_store
    from telemetry.clock import utc_now
    from watchloop.services import RedisServer
    from watchloop.services.base import free_port
    from watchloop.services.prometheus import (
        AlertmanagerServer,
        PrometheusServer,
        alertmanager_config,
        prometheus_config,
    )

    ours, theirs = _receiver(), _receiver()
    store = open_store(f"chdb://{directory}/store")
    Migrator(store).migrate()
    redis_server = RedisServer(directory / "redis").start(timeout=30)
    registry = CollectorRegistry()
    gauge = Gauge("watchloop_model_traffic", "p99", ["model", "version", "metric"],
                  registry=registry)
    exporter_port = free_port()
    server, thread = start_http_server(exporter_port, addr="127.0.0.1", registry=registry)
    manager = AlertmanagerServer(directory / "am", alertmanager_config(
        theirs.url + "/am", group_wait="1s", group_interval="1s")).start(timeout=30)
    rule_text = ("groups:\n- name: bench\n  rules:\n  - alert: fraud-p99\n"
                 "    expr: watchloop_model_traffic{metric=\"latency_p99_ms\"} > 50\n")
    prometheus = PrometheusServer(
        directory / "prom", prometheus_config([f"127.0.0.1:{exporter_port}"],
                                              alertmanagers=[manager.address.split("//")[-1]]),
        {"bench.yml": rule_text}).start(timeout=60)
    settings = AlertsSettings.model_validate({
        "redis_url": redis_server.url, "lease_ttl": "3s",
        "rules": [{"name": "fraud-p99", "interval": interval, "threshold": {
            "series": {"monitor": "latency", "metric": "latency_p99_ms", "model": MODEL},
            "op": ">", "value": 50}}],
        "receivers": [{"name": "hook", "type": "webhook", "url": ours.url + "/hook"}],
        "route": {"receivers": ["hook"]},
    })
    client = redis.Redis.from_url(redis_server.url)
    evaluator = AlertEvaluator(settings, store, client,
                               {"hook": WebhookSink(settings.receivers[0])})
    evaluator.start()
    writer = ResultWriter(store)
    sent: dict[str, float] = {}
    try:
        time.sleep(3)  # Prometheus' first scrapes
        for i in range(breaches):
            version = f"b{i}"
            now = utc_now()
            sent[version] = time.time()
            writer.write_metrics("latency", MODEL, version, now - timedelta(minutes=5), now,
                                 {"latency_p99_ms": 80.0}, now, status="ok")
            gauge.labels(MODEL, version, "latency_p99_ms").set(80.0)
            time.sleep(2.0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
                len(_arrivals(ours, "hook")) < breaches or
                len(_arrivals(theirs, "am")) < breaches):
            time.sleep(0.2)
    finally:
        evaluator.stop()
        client.close()
        prometheus.stop()
        manager.stop()
        server.shutdown()
        redis_server.stop()
        store.close()
        ours.close()
        theirs.close()
    watchloop_ms = [(t - sent[v]) * 1000 for v, t in _arrivals(ours, "hook").items()]
    prometheus_ms = [(t - sent[v]) * 1000 for v, t in _arrivals(theirs, "am").items()]
    log(f"watchloop: {len(watchloop_ms)} pages, prometheus+alertmanager: "
        f"{len(prometheus_ms)} pages")
    return {
        "watchloop_p50_ms": round(percentile(watchloop_ms, 50), 1),
        "watchloop_p99_ms": round(percentile(watchloop_ms, 99), 1),
        "prometheus_p50_ms": round(percentile(prometheus_ms, 50), 1),
        "prometheus_p99_ms": round(percentile(prometheus_ms, 99), 1),
        "pages": len(watchloop_ms), "prometheus_pages": len(prometheus_ms),
    }


def _arrivals(receiver: Any, path: str) -> dict[str, float]:
    """The first arrival time of each breached version at the receiver."""
    found: dict[str, float] = {}
    for post in receiver.posts:
        if not post["path"].endswith(path):
            continue
        body = post["body"]
        alerts = body["alerts"] if "alerts" in body else [body["watchloop"]]
        for alert in alerts:
            if alert.get("status") == "firing":
                found.setdefault(alert["labels"]["version"], post["at"])
    return found


def backtests(directory: Any, rows: int, replay_steps: int, seed: int) -> dict[str, float]:
    from alerts.backtest import backtest, steps_of
    from alerts.evaluate import rule_samples
    from alerts.rules import Rule
    from drift.frames import log_columns
    from telemetry import Migrator, open_store
    from telemetry.clock import epoch_ms, utc_now

    store = open_store(f"chdb://{directory}/backtest")
    Migrator(store).migrate()
    end = utc_now().replace(second=0, microsecond=0) - timedelta(hours=1)
    start = end - timedelta(days=7)
    minutes = 7 * 24 * 60
    rng = np.random.default_rng(seed)
    log(f"writing {minutes:_} per-minute monitor results")
    times = [epoch_ms(start + timedelta(minutes=m)) for m in range(minutes)]
    values = np.where(rng.random(minutes) < 0.02, 80.0, 20.0)
    store.insert_columns("monitor_results", {
        "ts": times, "ingest_time": [t + 2000 for t in times], "monitor": ["latency"] * minutes,
        "model": [MODEL] * minutes, "model_version": ["7"] * minutes,
        "window_start": times, "window_end": times,
        "metric": ["latency_p99_ms"] * minutes, "value": values.tolist(),
        "labels": [{}] * minutes, "status": ["ok"] * minutes,
        "window_rows": [100] * minutes, "sample_size": [100] * minutes,
        "coverage": [1.0] * minutes})
    log(f"writing {rows:_} inference logs over 7 days")
    frame_rows = 500_000
    for offset in range(0, rows, frame_rows):
        n = min(frame_rows, rows - offset)
        frame = pd.DataFrame({"amount": rng.lognormal(4, 1.2, n),
                              "card_id": rng.integers(0, 50_000, n).astype(str)})
        stamps = np.sort(rng.integers(epoch_ms(start), epoch_ms(end), n))
        store.insert_columns("inference_logs", log_columns(
            frame, MODEL, "7", stamps, stamps + 500,
            request_ids=[f"r{offset + i}" for i in range(n)]))
    # 50 bursts: one card buying 6 times within 30 seconds (the rule's velocity fraud)
    burst_at = rng.integers(epoch_ms(start), epoch_ms(end) - 60_000, 50)
    stamps = np.concatenate([at + np.arange(6) * 5_000 for at in burst_at])
    store.insert_columns("inference_logs", log_columns(
        pd.DataFrame({"amount": np.full(len(stamps), 900.0),
                      "card_id": [f"burst{i // 6}" for i in range(len(stamps))]}),
        MODEL, "7", stamps, stamps + 500,
        request_ids=[f"burst-{i}" for i in range(len(stamps))]))
    threshold = Rule.model_validate({
        "name": "p99", "interval": "1m", "for": "2m", "threshold": {
            "series": {"monitor": "latency", "metric": "latency_p99_ms"}, "value": 50}})
    query = Rule.model_validate({
        "name": "velocity", "interval": "1m", "query": {
            "model": MODEL, "where": "amount > 200", "group_by": ["card_id"],
            "window": "1m", "value": 2}})
    out: dict[str, float] = {}
    for key, rule in (("threshold", threshold), ("query", query)):
        started = time.perf_counter()
        result = backtest(store, rule, start, end)
        one = time.perf_counter() - started
        steps = steps_of(rule, start, end)
        chosen = steps[:: max(1, len(steps) // replay_steps)][:replay_steps]
        started = time.perf_counter()
        for step in chosen:
            rule_samples(store, rule, [step])
        per_step = (time.perf_counter() - started) / len(chosen)
        replay = per_step * len(steps)
        log(f"{key}: backtest {one:.2f}s ({len(result.firings)} firings over {len(steps):_} "
            f"steps); replay {per_step * 1000:.1f} ms/step, {replay:.0f}s for every step")
        out[f"backtest_{key}_s"] = round(one, 3)
        out[f"replay_{key}_s"] = round(replay, 1)
        out[f"backtest_{key}_speedup"] = round(replay / one, 1)
    store.close()
    out["backtest_speedup"] = min(out["backtest_threshold_speedup"],
                                  out["backtest_query_speedup"])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0], rows=10_000_000, batch=500_000,
                         quick_rows=200_000)
    parser.add_argument("--breaches", type=int, default=15, help="breaches timed (default 15)")
    parser.add_argument("--interval", default="250ms",
                        help="Watchloop's rule evaluation interval (default 250ms)")
    parser.add_argument("--replay-steps", type=int, default=100,
                        help="steps the one-query-per-step replay is timed over")
    args = parse_args(parser, argv)
    with temporary_directory("watchloop-bench-alerts-") as directory:
        result: dict[str, Any] = {"rows": args.rows, "breaches": args.breaches,
                                  "interval": args.interval}
        result.update(latency(directory, 5 if args.quick else args.breaches, args.interval))
        result.update(backtests(directory, args.rows, args.replay_steps, args.seed))
    result["watchloop_vs_prometheus_p99"] = round(
        result["prometheus_p99_ms"] / result["watchloop_p99_ms"], 2)
    emit_result(result)


if __name__ == "__main__":
    main()
