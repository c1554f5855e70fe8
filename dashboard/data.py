"""The only module of the console that touches the store: cached, parameterised reads.

Under ``watchloop up`` the shell hands over the process's store and settings
(``dashboard.shared``). Run on its own (``streamlit run dashboard/app.py``), the console
opens ``$WATCHLOOP_STORE_URL`` and reads its rules from ``$WATCHLOOP_CONFIG``. Query results
are cached for a few seconds, keyed by their parameters; times are passed in whole seconds
(``Span``) so that a self-refreshing page hits the cache between refreshes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import streamlit as st

import drift.queries as monitor_queries
from alerts.evaluate import fingerprint, rule_samples
from alerts.rules import Rule
from feedback.lineage import LineageLog
from telemetry import Store, open_store, queries
from telemetry.clock import utc_now

from . import sql
from .grid import Grid, build_grid
from .shared import API_URL_ENV, STORE_URL_ENV, ConsoleSettings, shared_settings, shared_store

_TTL = 5
# Each refresh asks with a new end time: without a bound, a console left open would keep
# every answer until its TTL lapsed and Streamlit next looked (its known growth).
_ENTRIES = 32


@dataclass(frozen=True)
class Span:
    """The time range every panel of a page shows: the last ``minutes`` up to ``end``."""

    minutes: int
    end: datetime

    @property
    def start(self) -> datetime:
        return self.end - timedelta(minutes=self.minutes)

    @classmethod
    def last(cls, minutes: int) -> Span:
        """The last ``minutes`` up to now, now rounded up to the next second (cache-friendly;
        rounding down hid what arrived in the current second from ``< end`` queries)."""
        return cls(minutes, utc_now().replace(microsecond=0) + timedelta(seconds=1))


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


@st.cache_resource(show_spinner=False)
def settings() -> ConsoleSettings:
    """Rules, SLOs and the API's address: handed over, or read from the config file."""
    handed = shared_settings()
    if handed is not None:
        return handed
    from watchloop.config import find_config_file, load_config

    config = load_config(find_config_file(None))
    slos = config.monitors.slos if config.monitors is not None else ()
    mlflow = None
    if config.feedback is not None:
        from feedback import tracking_uri

        mlflow = tracking_uri(config.feedback, config.data_dir)
    return ConsoleSettings(rules=config.alert_rules(), slos=tuple(slos),
                           api_url=os.environ.get(API_URL_ENV) or
                           f"http://{config.api.host}:{config.api.port}",
                           token_required=config.api.token is not None,
                           refresh=config.console.refresh,
                           models=tuple(m.name for m in config.models), mlflow_uri=mlflow)


def rule(name: str) -> Rule | None:
    """A configured alert rule by name."""
    return next((r for r in settings().rules if r.name == name), None)


def _frame(rows: list[dict], columns: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns) if rows or columns else pd.DataFrame()


# --- status ---------------------------------------------------------------------------------

@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def active_alerts() -> pd.DataFrame:
    """Alerts pending, firing, without data or in error: firing pages first."""
    return _frame(sql.alerts(get_store()),
                  ["fingerprint", "rule", "severity", "state", "model", "model_version",
                   "value", "summary", "labels", "since", "acked_at", "acked_by"])


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def all_alerts() -> pd.DataFrame:
    """Every alert's newest state, resolved ones included."""
    return _frame(sql.alerts(get_store(), active_only=False))


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def grid(span: Span) -> Grid:
    """The on-call status grid over ``span`` (see ``dashboard.grid``)."""
    store = get_store()
    # monitors write a result per evaluation: their newest within a day is the current one
    since = span.end - timedelta(days=1)
    return build_grid(
        traffic=queries.traffic(store, span.start, span.end + timedelta(minutes=1)),
        minutes=span.minutes,
        drift=sql.latest_drift_share(store, since),
        quality=sql.latest_monitor_values(store, "quality", since),
        slo=sql.latest_monitor_values(store, "slo", since),
        alerts=sql.alerts(store),
        lag=queries.kafka_lag_by_group(store, 15, now=span.end),
        collectors=queries.collector_health(store),
        gpus=queries.gpu_latest(store, 15, now=span.end),
        settings=settings(),
    )


# --- models ---------------------------------------------------------------------------------

@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def models(span: Span) -> pd.DataFrame:
    """Models and versions seen in the last day up to the span's end, configured ones too."""
    seen = sql.models(get_store(), span.end - timedelta(days=1))
    known = {row["model"] for row in seen}
    seen += [{"model": m, "model_version": "", "last_seen": None}
             for m in settings().models if m not in known]
    return _frame(seen, ["model", "model_version", "last_seen"])


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def traffic_per_minute(model: str, span: Span) -> pd.DataFrame:
    """Requests, errors and latency quantiles per minute and version of a model."""
    frame = _frame(sql.traffic_per_minute(get_store(), model, span.start, span.end),
                   ["minute", "model_version", "requests", "errors", "q", "p50_ms", "p95_ms",
                    "p99_ms"])
    frame["error_rate"] = frame["errors"] / frame["requests"].where(frame["requests"] > 0)
    return frame.drop(columns="q")


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def version_traffic(model: str, span: Span) -> pd.DataFrame:
    """Requests, errors and latency per version of a model over the span."""
    rows = queries.traffic(get_store(), span.start, span.end + timedelta(minutes=1),
                           model=model)
    return _frame(rows, ["model", "model_version", "requests", "errors", "latency_sum_ms",
                         "latency_max_ms", "q", "p50_ms", "p90_ms", "p95_ms", "p99_ms",
                         "first_minute"])


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def drift_scores(model: str, version: str, span: Span) -> pd.DataFrame:
    """Drift score per feature and evaluation of a model version."""
    return _frame(sql.drift_scores(get_store(), model, version, span.start, span.end),
                  ["ts", "feature", "score", "threshold", "drifted", "status"])


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def latest_drift(model: str, version: str) -> pd.DataFrame:
    """The newest drift result of each column of a model version."""
    return _frame(monitor_queries.latest_drift(get_store(), model, version))


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def feature_distribution(model: str, version: str, feature: str, span: Span) -> pd.DataFrame:
    """A feature's reference and current distributions over the same bins."""
    return _frame(sql.feature_distribution(get_store(), model, version, feature, span.start,
                                           span.end))


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def monitor_metrics(model: str, version: str, monitor: str, span: Span) -> pd.DataFrame:
    """A monitor's metrics (quality, latency, slo) for a model version over the span."""
    return _frame(monitor_queries.metric_history(get_store(), model, version, monitor,
                                                 span.start),
                  ["ts", "metric", "value", "labels", "status", "sample_size", "coverage"])


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def prediction_histogram(model: str, versions: tuple[str, ...], span: Span) -> pd.DataFrame:
    """Each version's share of predictions per score bin over the span."""
    return _frame(sql.prediction_histogram(get_store(), model, list(versions), span.start,
                                           span.end),
                  ["model_version", "bin", "n", "share"])


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def deployments(model: str | None = None, limit: int = 50) -> pd.DataFrame:
    """Changes to serving, newest first."""
    return _frame(sql.deployments(get_store(), model, limit),
                  ["ts", "model", "model_version", "server", "action", "status", "actor",
                   "reason", "details"])


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def lineage(model: str) -> list[dict[str, Any]]:
    """The model's retrainings, newest first, each with its steps."""
    return [{"trigger_id": r.trigger_id, "version": r.version, "outcome": r.outcome,
             "steps": r.steps} for r in LineageLog(get_store()).trace(model)]


# --- pipelines ------------------------------------------------------------------------------

@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def table_summaries() -> pd.DataFrame:
    """Rows and freshness of each fact table."""
    return _frame([{"table": s.table, "rows": s.rows, "newest event": s.newest_event,
                    "newest ingest": s.newest_ingest}
                   for s in queries.table_summaries(get_store())],
                  ["table", "rows", "newest event", "newest ingest"])


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def dead_letter_reasons() -> pd.DataFrame:
    """Dead letters grouped by source and reason."""
    return _frame(queries.dead_letter_reasons(get_store()),
                  ["source", "kind", "reason", "records", "last_seen"])


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def recent_dead_letters(limit: int = 50) -> pd.DataFrame:
    """The newest dead letters with a prefix of their payload."""
    return _frame(queries.recent_dead_letters(get_store(), limit))


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def dead_letters_over_time(span: Span) -> pd.DataFrame:
    """Dead letters per minute and reason class."""
    return _frame(sql.dead_letters_over_time(get_store(), span.start, span.end),
                  ["minute", "source", "reason", "records"])


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def collector_health() -> pd.DataFrame:
    """Each collector's newest health record."""
    return _frame(queries.collector_health(get_store()))


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def collector_throughput(span: Span) -> pd.DataFrame:
    """Rows stored per minute by each collector."""
    frame = _frame(sql.collector_throughput(get_store(), span.start, span.end),
                   ["collector", "minute", "rows_out"])
    # cumulative counters: the increase from one minute to the next (a restart resets)
    frame["rows"] = frame.groupby("collector")["rows_out"].diff().clip(lower=0)
    return frame.dropna(subset=["rows"])


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def kafka_lag(span: Span) -> pd.DataFrame:
    """Lag and worst partition status per consumer group and topic."""
    return _frame(queries.kafka_lag_by_group(get_store(), span.minutes, now=span.end),
                  ["consumer_group", "topic", "lag_messages", "lag_seconds", "partitions",
                   "status", "reason", "as_of"])


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def lag_history(span: Span) -> pd.DataFrame:
    """Lag per group, topic and partition over time."""
    return _frame(sql.lag_history(get_store(), span.start, span.end),
                  ["ts", "consumer_group", "topic", "partition", "lag_messages",
                   "lag_seconds", "status", "reason"])


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def gpus(span: Span) -> pd.DataFrame:
    """Each GPU's newest readings."""
    return _frame(queries.gpu_latest(get_store(), span.minutes, now=span.end))


# --- alerts ---------------------------------------------------------------------------------

@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def alert_timeline(span: Span) -> pd.DataFrame:
    """Lifecycle events of every alert over the span."""
    return _frame(sql.alert_timeline(get_store(), span.start, span.end),
                  ["ts", "rule", "fingerprint", "state", "severity", "model",
                   "model_version", "value", "actor"])


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def alert_actions(limit: int = 50) -> pd.DataFrame:
    """Acknowledgements and silences, newest first, with who made them."""
    return _frame(sql.actions(get_store(), limit),
                  ["ts", "action", "fingerprint", "comment", "labels", "actor"])


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def why_it_fired(rule_name: str, alert_fingerprint: str, end: datetime,
                 steps: int = 30) -> pd.DataFrame:
    """The series an alert's rule watched, as the rule saw it, over its last ``steps``
    evaluations: columns ``ts`` and ``value`` (empty when the rule is unknown)."""
    found = rule(rule_name)
    if found is None:
        return pd.DataFrame(columns=["ts", "value"])
    moments = [end - found.interval * (steps - 1 - i) for i in range(steps)]
    samples = rule_samples(get_store(), found, moments)
    series = next((values for labels, values in samples.items()
                   if fingerprint(found, labels) == alert_fingerprint), [None] * steps)
    return pd.DataFrame({"ts": moments, "value": series})


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def latest_slos(model: str, version: str) -> pd.DataFrame:
    """The newest burn rates and budgets of the SLOs of a model version."""
    return _frame(monitor_queries.latest_slos(get_store(), model, version))


@st.cache_data(ttl=60, max_entries=_ENTRIES, show_spinner="Replaying the rule over stored history…")
def backtest(rule_json: str, start: datetime, end: datetime) -> dict[str, Any]:
    """What a rule (as JSON, possibly an edited copy) would have done over [start, end)."""
    from alerts.backtest import backtest as replay

    return replay(get_store(), Rule.model_validate_json(rule_json), start, end).as_dict()


@st.cache_data(ttl=60, max_entries=_ENTRIES, show_spinner="Checking the rule against labels…")
def radar(rule_json: str, start: datetime, end: datetime) -> dict[str, Any]:
    """A query rule against the labels: requests hit, caught (positive), false hits."""
    from dataclasses import asdict

    from alerts.backtest import radar as against_labels

    query = Rule.model_validate_json(rule_json).query
    assert query is not None
    found = against_labels(get_store(), query, start, end)
    return {**asdict(found), "precision": found.precision, "recall": found.recall}


@st.cache_data(ttl=60, max_entries=_ENTRIES, show_spinner=False)
def mlflow_versions(model: str, versions: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Each version's training run from MLflow (params, metrics, tags); a version MLflow
    does not know maps to ``{"error": why}``. Empty without a feedback loop."""
    uri = settings().mlflow_uri
    if not uri:
        return {}
    from feedback.registry import ModelRegistry, RegistryError

    registry = ModelRegistry(uri)
    found: dict[str, dict[str, Any]] = {}
    for version in versions:
        try:
            found[version] = registry.describe(model, version)
        except RegistryError as exc:
            found[version] = {"error": str(exc)}
    return found


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def quality_by_version(model: str, span: Span) -> pd.DataFrame:
    """The newest value of every quality metric of each version of a model, with its
    evidence (status, labels joined)."""
    rows = sql.latest_monitor_values(get_store(), "quality", span.end - timedelta(days=1))
    return _frame([r for r in rows if r["model"] == model],
                  ["model", "model_version", "metric", "slo", "window", "value", "status",
                   "sample_size", "as_of"])


@st.cache_data(ttl=_TTL, max_entries=_ENTRIES, show_spinner=False)
def serving(model: str, span: Span) -> tuple[dict | None, pd.DataFrame]:
    """Which version serves the model (the newest promote or rollback that took), and the
    serving backend's newest metrics per version."""
    store = get_store()
    return (sql.serving_state(store, model),
            _frame(sql.serving_metrics(store, model, span.start),
                   ["server", "model_version", "metric", "value", "as_of"]))
