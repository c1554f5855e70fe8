"""Queries shared by the console, the CLI and the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .clock import utc, utc_now
from .store import Store

#: Fact tables and the columns that hold their event time and ingest time.
FACT_TABLES: dict[str, tuple[str, str]] = {
    "inference_logs": ("event_time", "ingest_time"),
    "labels": ("label_time", "ingest_time"),
    "serving_metrics": ("ts", "ingest_time"),
    "gpu_metrics": ("ts", "ingest_time"),
    "kafka_lag": ("ts", "ingest_time"),
    "drift_results": ("ts", "ingest_time"),
    "alert_events": ("ts", "ingest_time"),
    "retrain_runs": ("ts", "ingest_time"),
    "deployments": ("ts", "ingest_time"),
    "dead_letters": ("ingest_time", "ingest_time"),
}


@dataclass(frozen=True)
class TableSummary:
    """How much a table holds and how fresh it is."""

    table: str
    rows: int
    newest_event: datetime | None
    newest_ingest: datetime | None


def table_summaries(store: Store) -> list[TableSummary]:
    """Row counts and newest event/ingest times of every fact table, in one round trip.

    ``count()`` comes from part metadata, so this stays fast on large tables. Redelivered
    inference logs are not counted twice because the writer drops them before inserting.
    """
    parts = []
    for table, (event_col, ingest_col) in FACT_TABLES.items():
        parts.append(
            f"SELECT '{table}' AS t, count() AS n, "
            f"if(n = 0, NULL, max({event_col})) AS e, if(n = 0, NULL, max({ingest_col})) AS i "
            f"FROM {table}"
        )
    rows = store.query(" UNION ALL ".join(parts))
    by_table = {t: TableSummary(t, int(n), e, i) for t, n, e, i in rows}
    return [by_table[t] for t in FACT_TABLES]


def recent_dead_letters(store: Store, limit: int = 50) -> list[dict]:
    """The newest dead-lettered records with their source and reason."""
    return store.query_dicts(
        "SELECT ingest_time, source, kind, reason, substring(payload, 1, 500) AS payload "
        "FROM dead_letters ORDER BY ingest_time DESC LIMIT {limit:UInt32}",
        {"limit": limit},
    )


def dead_letter_reasons(store: Store, limit: int = 20) -> list[dict]:
    """Dead letters grouped by source and reason, most frequent first."""
    return store.query_dicts(
        "SELECT source, kind, reason, count() AS records, max(ingest_time) AS last_seen "
        "FROM dead_letters GROUP BY source, kind, reason "
        "ORDER BY records DESC LIMIT {limit:UInt32}",
        {"limit": limit},
    )


def traffic(store: Store, start: datetime, end: datetime, *, model: str = "",
            version: str = "") -> list[dict]:
    """Requests, errors and latency per model version over the rollup minutes in
    [start, end): the one traffic query, for the monitors and the console alike.

    Each row has ``requests``, ``errors``, ``latency_sum_ms``, ``latency_max_ms``, the merged
    quantiles ``p50_ms``, ``p90_ms``, ``p95_ms``, ``p99_ms`` and ``first_minute`` (the first
    minute with data); ``model``/``version`` narrow it to one model or version.
    """
    return store.query_dicts(
        "SELECT model, model_version, sum(requests) AS requests, sum(errors) AS errors, "
        "sum(latency_sum_ms) AS latency_sum_ms, max(latency_max_ms) AS latency_max_ms, "
        "quantilesMerge(0.5, 0.9, 0.95, 0.99)(latency_quantiles) AS q, "
        "q[1] AS p50_ms, q[2] AS p90_ms, q[3] AS p95_ms, q[4] AS p99_ms, "
        "min(minute) AS first_minute FROM inference_rollup_1m "
        "WHERE minute >= {start:DateTime('UTC')} AND minute < {end:DateTime('UTC')} "
        "AND ({m:String} = '' OR model = {m:String}) "
        "AND ({v:String} = '' OR model_version = {v:String}) "
        "GROUP BY model, model_version ORDER BY model, model_version",
        {"start": utc(start), "end": utc(end), "m": model, "v": str(version)},
    )


def model_traffic(store: Store, minutes: int = 60, *, now: datetime | None = None) -> list[dict]:
    """``traffic`` over the last minutes up to ``now``, the minute in progress included."""
    end = _next_minute(now or utc_now())
    return traffic(store, end - timedelta(minutes=minutes + 1), end)


def requests_per_minute(store: Store, minutes: int = 60, *,
                        now: datetime | None = None) -> list[dict]:
    """Requests per minute and model version over the last minutes, for charts."""
    end = _next_minute(now or utc_now())
    return store.query_dicts(
        "SELECT minute, concat(model, ' v', model_version) AS version, sum(requests) AS requests "
        "FROM inference_rollup_1m WHERE minute >= {start:DateTime('UTC')} "
        "AND minute < {end:DateTime('UTC')} GROUP BY minute, version ORDER BY minute",
        {"start": end - timedelta(minutes=minutes + 1), "end": end},
    )


def _next_minute(moment: datetime) -> datetime:
    return utc(moment).replace(second=0, microsecond=0) + timedelta(minutes=1)


def collector_health(store: Store) -> list[dict]:
    """The newest health record of every collector."""
    return store.query_dicts(
        "SELECT collector, argMax(kind, ts) AS kind, max(ts) AS as_of, "
        "argMax(rows_in, ts) AS rows_in, argMax(rows_out, ts) AS rows_out, "
        "argMax(dead_letters, ts) AS dead_letters, argMax(duplicates, ts) AS duplicates, "
        "argMax(store_retries, ts) AS store_retries, argMax(lag, ts) AS lag, "
        "argMax(last_success, ts) AS last_success, argMax(last_error, ts) AS last_error "
        "FROM collector_health GROUP BY collector ORDER BY collector"
    )


def kafka_lag_by_group(store: Store, minutes: int = 15, *,
                       now: datetime | None = None) -> list[dict]:
    """Per consumer group and topic: total lag, the oldest unconsumed record's age, and the
    worst partition status with its reason, from each partition's newest sample."""
    return store.query_dicts(
        "SELECT consumer_group, topic, sum(lag) AS lag_messages, max(age) AS lag_seconds, "
        "count() AS partitions, "
        "argMax(st, severity) AS status, argMax(why, severity) AS reason, max(at) AS as_of "
        "FROM (SELECT consumer_group, topic, partition, argMax(lag_messages, ts) AS lag, "
        "      argMax(lag_seconds, ts) AS age, argMax(status, ts) AS st, "
        # from healthy to worst: a status's place in this list is its severity
        "      indexOf(['OK', 'WARN', 'REWIND', 'STALL', 'STOP'], st) AS severity, "
        "      argMax(reason, ts) AS why, max(ts) AS at FROM kafka_lag "
        "      WHERE ts >= {since:DateTime64(3, 'UTC')} "
        "      GROUP BY consumer_group, topic, partition) "
        "GROUP BY consumer_group, topic ORDER BY consumer_group, topic",
        {"since": utc(now or utc_now()) - timedelta(minutes=minutes)},
    )


def gpu_latest(store: Store, minutes: int = 15, *, now: datetime | None = None) -> list[dict]:
    """Each GPU's newest utilisation, memory, temperature and power (NVML or DCGM names)."""
    return store.query_dicts(
        "SELECT host, gpu, any(gpu_uuid) AS uuid, max(ts) AS as_of, "
        "argMaxIf(value, ts, metric IN ('nvml_gpu_utilization_percent', "
        "  'DCGM_FI_DEV_GPU_UTIL')) AS util_percent, "
        # DCGM reports framebuffer memory in MiB, NVML in bytes
        "argMaxIf(if(metric = 'DCGM_FI_DEV_FB_USED', value * 1048576, value), ts, "
        "  metric IN ('nvml_memory_used_bytes', 'DCGM_FI_DEV_FB_USED')) AS memory_used_bytes, "
        "argMaxIf(value, ts, metric IN ('nvml_temperature_celsius', 'DCGM_FI_DEV_GPU_TEMP')) "
        "  AS temperature_c, "
        "argMaxIf(value, ts, metric IN ('nvml_power_usage_watts', 'DCGM_FI_DEV_POWER_USAGE')) "
        "  AS power_w "
        "FROM gpu_metrics WHERE ts >= {since:DateTime64(3, 'UTC')} AND gpu_uuid != '' "
        "GROUP BY host, gpu ORDER BY host, gpu",
        {"since": utc(now or utc_now()) - timedelta(minutes=minutes)},
    )
