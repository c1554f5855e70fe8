"""Queries shared by the console, the CLI and the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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

    Counts of inference logs are of distinct request ids, so redeliveries do not inflate them.
    """
    parts = []
    for table, (event_col, ingest_col) in FACT_TABLES.items():
        count = "uniqExact(request_id)" if table == "inference_logs" else "count()"
        parts.append(
            f"SELECT '{table}' AS t, {count} AS n, "
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


def model_traffic(store: Store, minutes: int = 60) -> list[dict]:
    """Requests, errors and latency quantiles per model version over the last minutes."""
    return store.query_dicts(
        "SELECT model, model_version, sum(requests) AS requests, sum(errors) AS errors, "
        "quantilesMerge(0.5, 0.9, 0.95, 0.99)(latency_quantiles) AS q "
        "FROM inference_rollup_1m "
        "WHERE minute >= now() - toIntervalMinute({minutes:UInt32}) "
        "GROUP BY model, model_version ORDER BY model, model_version",
        {"minutes": minutes},
    )
