"""The only module of the console that touches the store.

Under ``watchloop up`` the shell hands over the process's store with ``use_store`` (an embedded
store can be open in one process only). Run on its own (``streamlit run dashboard/app.py``),
the console opens ``$WATCHLOOP_STORE_URL``. Query results are cached for a few seconds.
"""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from telemetry import Store, open_store, queries

from .shared import STORE_URL_ENV, shared_store


@st.cache_resource(show_spinner=False)
def get_store() -> Store:
    """The store this console reads."""
    if shared_store() is not None:
        return shared_store()
    url = os.environ.get(STORE_URL_ENV)
    if not url:
        raise RuntimeError(
            f"no store: run the console with `watchloop up`, or set {STORE_URL_ENV} "
            "(for example http://host:8123/watchloop)"
        )
    return open_store(url)


@st.cache_data(ttl=5, show_spinner=False)
def table_summaries() -> pd.DataFrame:
    """Rows and freshness of each fact table."""
    rows = queries.table_summaries(get_store())
    return pd.DataFrame(
        [
            {"table": s.table, "rows": s.rows, "newest event": s.newest_event,
             "newest ingest": s.newest_ingest}
            for s in rows
        ]
    )


@st.cache_data(ttl=5, show_spinner=False)
def dead_letter_reasons() -> pd.DataFrame:
    """Dead letters grouped by source and reason."""
    return pd.DataFrame(queries.dead_letter_reasons(get_store()))


@st.cache_data(ttl=5, show_spinner=False)
def recent_dead_letters(limit: int = 50) -> pd.DataFrame:
    """The newest dead letters with a prefix of their payload."""
    return pd.DataFrame(queries.recent_dead_letters(get_store(), limit))


@st.cache_data(ttl=5, show_spinner=False)
def model_traffic(minutes: int) -> pd.DataFrame:
    """Requests, errors and latency quantiles per model version."""
    rows = queries.model_traffic(get_store(), minutes)
    for row in rows:
        p50, _, p95, p99 = row.pop("q")
        row.update({"p50 ms": p50, "p95 ms": p95, "p99 ms": p99})
        row["error rate"] = row["errors"] / row["requests"] if row["requests"] else 0.0
    return pd.DataFrame(rows)


@st.cache_data(ttl=5, show_spinner=False)
def requests_per_minute(minutes: int) -> pd.DataFrame:
    """Requests per minute and model version, for the traffic chart."""
    return get_store().query_df(
        "SELECT minute, concat(model, ' v', model_version) AS version, sum(requests) AS requests "
        "FROM inference_rollup_1m WHERE minute >= now() - toIntervalMinute({m:UInt32}) "
        "GROUP BY minute, version ORDER BY minute",
        {"m": minutes},
    )


@st.cache_data(ttl=5, show_spinner=False)
def collector_health() -> pd.DataFrame:
    """Each collector's newest health record."""
    return pd.DataFrame(queries.collector_health(get_store()))


@st.cache_data(ttl=5, show_spinner=False)
def kafka_lag(minutes: int) -> pd.DataFrame:
    """Lag and worst partition status per consumer group and topic."""
    return pd.DataFrame(queries.kafka_lag_by_group(get_store(), minutes))


@st.cache_data(ttl=5, show_spinner=False)
def gpus(minutes: int) -> pd.DataFrame:
    """Each GPU's newest readings."""
    return pd.DataFrame(queries.gpu_latest(get_store(), minutes))
