"""Read the monitors' results back: what the console, the CLI and alert rules show.

Every function reads what ``MonitorRunner`` wrote, optionally as of a moment, and returns
plain lists of dicts (one per row), newest evaluation last in histories.
"""

from __future__ import annotations

from datetime import datetime

from telemetry import PointInTime, Store

from .profiles import DATASET


def monitored_versions(store: Store) -> list[dict]:
    """Model versions with drift or monitor results, with the time of their newest result."""
    return store.query_dicts(
        "SELECT model, model_version, max(ts) AS last_evaluated FROM ("
        "SELECT model, model_version, ts FROM drift_results UNION ALL "
        "SELECT model, model_version, ts FROM monitor_results) "
        "GROUP BY model, model_version ORDER BY model, model_version"
    )


def latest_drift(
    store: Store, model: str, version: str, *, as_of: datetime | None = None
) -> list[dict]:
    """Per column and method, the newest evaluation's result (the dataset row included)."""
    pit = PointInTime(as_of)
    source = pit.source("drift_results")
    return store.query_dicts(
        "SELECT feature, kind, method, score, threshold, drifted, p_value, status, window_rows, "
        "sample_size, coverage, ts, window_start, "
        f"window_end FROM {source} WHERE model = {{m:String}} AND model_version = {{v:String}} "
        f"AND ts = (SELECT max(ts) FROM {source} WHERE model = {{m:String}} "
        "AND model_version = {v:String}) ORDER BY feature = {ds:String} DESC, feature, method",
        {**pit.params, "m": model, "v": str(version), "ds": DATASET},
    )


def drift_history(store: Store, model: str, version: str, since: datetime) -> list[dict]:
    """Deciding drift scores per column over time, and the share of drifted features."""
    return store.query_dicts(
        "SELECT ts, feature, method, score, threshold, drifted, status FROM drift_results "
        "WHERE model = {m:String} AND model_version = {v:String} AND ts >= {since:DateTime64(3)} "
        "AND NOT endsWith(method, ':extra') ORDER BY ts, feature",
        {"m": model, "v": str(version), "since": since},
    )


def metric_history(
    store: Store, model: str, version: str, monitor: str, since: datetime
) -> list[dict]:
    """A monitor's metrics over time (quality, latency or slo), with their labels."""
    return store.query_dicts(
        "SELECT ts, metric, value, labels, status, sample_size, coverage FROM monitor_results "
        "WHERE monitor = {mon:String} "
        "AND model = {m:String} AND model_version = {v:String} AND ts >= {since:DateTime64(3)} "
        "ORDER BY ts, metric",
        {"mon": monitor, "m": model, "v": str(version), "since": since},
    )


def latest_slos(store: Store, model: str, version: str) -> list[dict]:
    """The newest burn rates, alert conditions and budget of each SLO of a model version."""
    return store.query_dicts(
        "SELECT labels['slo'] AS slo, metric, labels['window'] AS window, "
        "labels['severity'] AS severity, labels['long'] AS long, labels['short'] AS short, "
        "argMax(tuple(value), ts).1 AS latest, argMax(status, ts) AS status, "
        "argMax(tuple(coverage), ts).1 AS coverage, argMax(sample_size, ts) AS requests, "
        "max(ts) AS evaluated_at FROM monitor_results "
        "WHERE monitor = 'slo' AND model = {m:String} AND model_version = {v:String} "
        "GROUP BY slo, metric, window, severity, long, short ORDER BY slo, metric, window",
        {"m": model, "v": str(version)},
    )
