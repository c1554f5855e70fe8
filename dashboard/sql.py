"""The console's queries: plain functions over a store, every value a bound parameter.

Only ``dashboard.data`` calls them (and caches their answers); the pages never build SQL.
Heavy work stays in ClickHouse: quantiles merge from the minute rollup, histograms are
binned in SQL, the newest result of each series is an ``argMax``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from drift.histograms import Window, WindowStatistics, column_ref
from drift.profiles import DATASET, NumericProfile
from drift.repository import ProfileRepository
from telemetry import Store
from telemetry.clock import utc

#: The lifecycle states the evaluator records (the rest are people's actions).
LIFECYCLE = ("inactive", "pending", "firing", "resolved", "nodata", "error")
ACTIVE = ("pending", "firing", "nodata", "error")


def _minute(moment: datetime) -> datetime:
    return utc(moment).replace(second=0, microsecond=0)


def alerts(store: Store, *, active_only: bool = True) -> list[dict]:
    """Each alert's newest lifecycle state, since when, and who acknowledged it (an
    acknowledgement counts from the moment the alert entered its state on)."""
    only = "AND state IN {active:Array(String)} " if active_only else ""
    # the inner names differ from the outer aliases: ClickHouse lets an alias shadow a column
    return store.query_dicts(
        "SELECT fingerprint, argMaxIf(r, ts, life) AS rule, "
        "argMaxIf(sev, ts, life) AS severity, argMaxIf(st, ts, life) AS state, "
        "argMaxIf(m, ts, life) AS model, argMaxIf(v, ts, life) AS model_version, "
        "argMaxIf(tuple(val), ts, life).1 AS value, argMaxIf(summ, ts, life) AS summary, "
        "argMaxIf(lab, ts, life) AS labels, maxIf(ts, life) AS since, "
        "maxIf(ts, st = 'acknowledged') AS acked_at, "
        "if(acked_at >= since, argMaxIf(who, ts, st = 'acknowledged'), '') AS acked_by "
        "FROM (SELECT ts, fingerprint, rule AS r, severity AS sev, state AS st, model AS m, "
        "      model_version AS v, value AS val, summary AS summ, labels AS lab, actor AS who, "
        "      state IN {life:Array(String)} AS life FROM alert_events "
        "      WHERE NOT startsWith(fingerprint, 'silence:')) "
        f"GROUP BY fingerprint HAVING countIf(life) > 0 {only}"
        "ORDER BY state = 'firing' DESC, severity = 'page' DESC, since",
        {"life": list(LIFECYCLE), "active": list(ACTIVE)},
    )

def alert_timeline(store: Store, start: datetime, end: datetime) -> list[dict]:
    """Every lifecycle event in ``[start, end)``, for a timeline per rule."""
    return store.query_dicts(
        "SELECT ts, rule, fingerprint, state, severity, model, model_version, value, actor "
        "FROM alert_events WHERE ts >= {start:DateTime64(3, 'UTC')} "
        "AND ts < {end:DateTime64(3, 'UTC')} AND state IN {life:Array(String)} "
        "ORDER BY rule, fingerprint, ts",
        {"start": utc(start), "end": utc(end), "life": list(LIFECYCLE)},
    )


def actions(store: Store, limit: int = 50) -> list[dict]:
    """People's actions on alerts and silences, newest first, with who did them."""
    return store.query_dicts(
        "SELECT ts, state AS action, fingerprint, summary AS comment, labels, actor "
        "FROM alert_events WHERE state NOT IN {life:Array(String)} "
        "ORDER BY ts DESC LIMIT {limit:UInt32}",
        {"life": list(LIFECYCLE), "limit": limit},
    )


def latest_drift_share(store: Store, since: datetime) -> list[dict]:
    """Per model version, its newest dataset drift result (the share of drifted features)."""
    return store.query_dicts(
        "SELECT model, model_version, argMax(tuple(score), ts).1 AS share, "
        "argMax(drifted, ts) AS drifted, argMax(status, ts) AS status, "
        "argMax(window_rows, ts) AS rows, max(ts) AS as_of FROM drift_results "
        "WHERE feature = {ds:String} AND ts >= {since:DateTime64(3, 'UTC')} "
        "GROUP BY model, model_version",
        {"ds": DATASET, "since": utc(since)},
    )


def latest_monitor_values(store: Store, monitor: str, since: datetime) -> list[dict]:
    """Per model version and metric (and window, for SLOs), the newest value of a monitor,
    with its evidence (status, sample size)."""
    return store.query_dicts(
        "SELECT model, model_version, metric, labels['slo'] AS slo, labels['window'] AS window, "
        "argMax(tuple(value), ts).1 AS value, argMax(status, ts) AS status, "
        "argMax(sample_size, ts) AS sample_size, max(ts) AS as_of FROM monitor_results "
        "WHERE monitor = {mon:String} AND ts >= {since:DateTime64(3, 'UTC')} "
        "GROUP BY model, model_version, metric, slo, window",
        {"mon": monitor, "since": utc(since)},
    )


def traffic_per_minute(store: Store, model: str, start: datetime, end: datetime) -> list[dict]:
    """Per minute and version of a model: requests, errors and latency quantiles."""
    return store.query_dicts(
        "SELECT minute, model_version, sum(requests) AS requests, sum(errors) AS errors, "
        "quantilesMerge(0.5, 0.95, 0.99)(latency_quantiles) AS q, q[1] AS p50_ms, "
        "q[2] AS p95_ms, q[3] AS p99_ms FROM inference_rollup_1m "
        "WHERE model = {m:String} AND minute >= {start:DateTime('UTC')} "
        "AND minute < {end:DateTime('UTC')} GROUP BY minute, model_version "
        "ORDER BY minute, model_version",
        {"m": model, "start": _minute(start), "end": _minute(end) + timedelta(minutes=1)},
    )


def drift_scores(store: Store, model: str, version: str, start: datetime,
                 end: datetime) -> list[dict]:
    """Deciding drift scores per feature and evaluation, for a heatmap."""
    return store.query_dicts(
        "SELECT ts, feature, score, threshold, drifted, status FROM drift_results "
        "WHERE model = {m:String} AND model_version = {v:String} AND feature != {ds:String} "
        "AND ts >= {start:DateTime64(3, 'UTC')} AND ts < {end:DateTime64(3, 'UTC')} "
        "AND NOT endsWith(method, ':extra') ORDER BY ts, feature",
        {"m": model, "v": version, "ds": DATASET, "start": utc(start), "end": utc(end)},
    )


def feature_distribution(store: Store, model: str, version: str, feature: str,
                         start: datetime, end: datetime) -> list[dict]:
    """A numeric feature's reference distribution and the window's, as shares of the same
    bins (the reference profile's edges, binned in SQL); empty without a profile."""
    profile = ProfileRepository(store).find_latest(model, version)
    column = profile.features.get(feature) if profile is not None else None
    if not isinstance(column, NumericProfile) or not column.edges:
        return []
    edges = list(column.edges)
    current = WindowStatistics(store).histograms(
        Window(model, version, start, end), [(column_ref(feature, "feature", "numeric"), edges)])
    # the window's histogram has a bin below the first edge that the reference's lacks
    # (its first edge is its minimum): bin k of the reference is bin k + 1 of the window
    counts = current[feature].counts
    reference = [0, *column.counts]
    ref_total = sum(column.counts) or 1
    cur_total = int(counts.sum()) or 1
    labels = ([f"< {edges[0]:.3g}"]
              + [f"{lo:.3g}–{hi:.3g}" for lo, hi in zip(edges, edges[1:], strict=False)]
              + [f"≥ {edges[-1]:.3g}"])
    return [{"bin": labels[i], "order": i, "reference": reference[i] / ref_total,
             "current": int(counts[i]) / cur_total, "current_rows": int(counts[i])}
            for i in range(len(labels))]

def prediction_histogram(store: Store, model: str, versions: list[str], start: datetime,
                         end: datetime, bins: int = 20) -> list[dict]:
    """The share of each version's predictions in equal bins over [0, 1] (scores), binned in
    SQL."""
    return store.query_dicts(
        "SELECT model_version, least(toUInt32(floor(assumeNotNull(prediction) * {b:UInt32})), "
        "{b:UInt32} - 1) / {b:UInt32} AS bin, count() AS n, "
        "n / sum(n) OVER (PARTITION BY model_version) AS share FROM inference_logs "
        "WHERE model = {m:String} AND model_version IN {vs:Array(String)} "
        "AND event_time >= {start:DateTime64(3, 'UTC')} "
        "AND event_time < {end:DateTime64(3, 'UTC')} "
        "AND prediction IS NOT NULL GROUP BY model_version, bin ORDER BY model_version, bin",
        {"m": model, "vs": list(versions), "start": utc(start), "end": utc(end), "b": bins},
    )


def deployments(store: Store, model: str | None = None, limit: int = 50) -> list[dict]:
    """Changes to serving, newest first: deploy, verify, promote, rollback, retire."""
    return store.query_dicts(
        "SELECT ts, model, model_version, server, action, status, actor, reason, details "
        "FROM deployments WHERE ({m:String} = '' OR model = {m:String}) "
        "ORDER BY ts DESC LIMIT {limit:UInt32}",
        {"m": model or "", "limit": limit},
    )


def models(store: Store, since: datetime) -> list[dict]:
    """Models and versions seen in traffic, monitor results or deployments since ``since``."""
    return store.query_dicts(
        "SELECT model, model_version, max(at) AS last_seen FROM ("
        " SELECT model, model_version, max(minute) AS at FROM inference_rollup_1m "
        " WHERE minute >= {since:DateTime('UTC')} GROUP BY model, model_version UNION ALL "
        " SELECT model, model_version, max(ts) FROM monitor_results "
        " WHERE ts >= {since:DateTime64(3, 'UTC')} GROUP BY model, model_version UNION ALL "
        " SELECT model, model_version, max(ts) FROM deployments "
        " WHERE ts >= {since:DateTime64(3, 'UTC')} GROUP BY model, model_version) "
        "WHERE model != '' GROUP BY model, model_version ORDER BY model, model_version",
        {"since": _minute(since)},
    )


def lag_history(store: Store, start: datetime, end: datetime) -> list[dict]:
    """Lag per group, topic and partition over time, in messages and seconds."""
    return store.query_dicts(
        "SELECT ts, consumer_group, topic, partition, lag_messages, lag_seconds, status, reason "
        "FROM kafka_lag WHERE ts >= {start:DateTime64(3, 'UTC')} "
        "AND ts < {end:DateTime64(3, 'UTC')} ORDER BY ts",
        {"start": utc(start), "end": utc(end)},
    )


def collector_throughput(store: Store, start: datetime, end: datetime) -> list[dict]:
    """Rows each collector stored per minute (from its cumulative health counters)."""
    return store.query_dicts(
        "SELECT collector, toStartOfMinute(ts) AS minute, max(rows_out) AS rows_out "
        "FROM collector_health WHERE ts >= {start:DateTime64(3, 'UTC')} "
        "AND ts < {end:DateTime64(3, 'UTC')} GROUP BY collector, minute "
        "ORDER BY collector, minute",
        {"start": utc(start), "end": utc(end)},
    )


def dead_letters_over_time(store: Store, start: datetime, end: datetime) -> list[dict]:
    """Dead letters per minute and reason class (the reason's text up to its first colon)."""
    return store.query_dicts(
        "SELECT toStartOfMinute(ingest_time) AS minute, source, "
        "splitByChar(':', reason)[1] AS reason, count() AS records FROM dead_letters "
        "WHERE ingest_time >= {start:DateTime64(3, 'UTC')} "
        "AND ingest_time < {end:DateTime64(3, 'UTC')} GROUP BY minute, source, reason "
        "ORDER BY minute",
        {"start": utc(start), "end": utc(end)},
    )



def serving_state(store: Store, model: str) -> dict | None:
    """The version a model's server serves by the newest promote or rollback that took,
    where, since when and who did it."""
    rows = store.query_dicts(
        "SELECT ts, model_version, server, action, actor, reason FROM deployments "
        "WHERE model = {m:String} AND action IN ('promote', 'rollback') AND status = 'ok' "
        "ORDER BY ts DESC LIMIT 1",
        {"m": model},
    )
    return rows[0] if rows else None


def serving_metrics(store: Store, model: str, since: datetime) -> list[dict]:
    """The newest value of each metric the serving backend reports per version of a model."""
    return store.query_dicts(
        "SELECT server, model_version, metric, argMax(value, ts) AS value, max(ts) AS as_of "
        "FROM serving_metrics WHERE model = {m:String} AND ts >= {since:DateTime64(3, 'UTC')} "
        "GROUP BY server, model_version, metric ORDER BY server, model_version, metric",
        {"m": model, "since": utc(since)},
    )
