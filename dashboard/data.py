"""The only module of the console that touches the store.

Under ``watchloop up`` the shell hands over the process's store with ``use_store`` (an embedded
store can be open in one process only). Run on its own (``streamlit run dashboard/app.py``),
the console opens ``$WATCHLOOP_STORE_URL``. Query results are cached for a few seconds.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pandas as pd
import streamlit as st

import drift.queries as monitor_queries
from drift.evidence import ratio
from telemetry import Store, open_store, queries
from telemetry.clock import utc_now

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
    rows = queries.model_traffic(get_store(), minutes, now=utc_now())
    shown = [{"model": r["model"], "model_version": r["model_version"],
              "requests": r["requests"], "errors": r["errors"], "p50 ms": r["p50_ms"],
              "p95 ms": r["p95_ms"], "p99 ms": r["p99_ms"],
              "error rate": ratio(r["errors"], r["requests"])} for r in rows]
    return pd.DataFrame(shown)


@st.cache_data(ttl=5, show_spinner=False)
def requests_per_minute(minutes: int) -> pd.DataFrame:
    """Requests per minute and model version, for the traffic chart."""
    return pd.DataFrame(queries.requests_per_minute(get_store(), minutes, now=utc_now()),
                        columns=["minute", "version", "requests"])


@st.cache_data(ttl=5, show_spinner=False)
def collector_health() -> pd.DataFrame:
    """Each collector's newest health record."""
    return pd.DataFrame(queries.collector_health(get_store()))


@st.cache_data(ttl=5, show_spinner=False)
def kafka_lag(minutes: int) -> pd.DataFrame:
    """Lag and worst partition status per consumer group and topic."""
    return pd.DataFrame(queries.kafka_lag_by_group(get_store(), minutes, now=utc_now()))


@st.cache_data(ttl=5, show_spinner=False)
def gpus(minutes: int) -> pd.DataFrame:
    """Each GPU's newest readings."""
    return pd.DataFrame(queries.gpu_latest(get_store(), minutes, now=utc_now()))


@st.cache_data(ttl=10, show_spinner=False)
def monitored_versions() -> pd.DataFrame:
    """Model versions the monitor runner has results for."""
    return pd.DataFrame(monitor_queries.monitored_versions(get_store()))


@st.cache_data(ttl=10, show_spinner=False)
def latest_drift(model: str, version: str) -> pd.DataFrame:
    """The newest drift result of each column of a model version."""
    return pd.DataFrame(monitor_queries.latest_drift(get_store(), model, version))


@st.cache_data(ttl=10, show_spinner=False)
def drift_history(model: str, version: str, minutes: int) -> pd.DataFrame:
    """Drift scores of a model version over the last minutes."""
    since = utc_now() - timedelta(minutes=minutes)
    return pd.DataFrame(monitor_queries.drift_history(get_store(), model, version, since))


@st.cache_data(ttl=10, show_spinner=False)
def monitor_metrics(model: str, version: str, monitor: str, minutes: int) -> pd.DataFrame:
    """A monitor's metrics (quality, latency) for a model version over the last minutes."""
    since = utc_now() - timedelta(minutes=minutes)
    return pd.DataFrame(
        monitor_queries.metric_history(get_store(), model, version, monitor, since))


@st.cache_data(ttl=10, show_spinner=False)
def latest_slos(model: str, version: str) -> pd.DataFrame:
    """The newest burn rates and budgets of the SLOs that apply to a model version."""
    return pd.DataFrame(monitor_queries.latest_slos(get_store(), model, version))
