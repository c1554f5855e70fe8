"""What the store saw a model version do: its recent requests, and its traffic in a window.

The verifier replays recent requests (point-in-time: only rows ingested by the moment of
the swap); the post-deploy analysis compares a new version's window with the previous
version's. Aggregates are computed in ClickHouse; only the replayed features come back.
Watchloop's own warm-up requests (``runtime.VERIFY_PREFIX``) are never logged, so they
never count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from telemetry.asof import PointInTime
from telemetry.store import Store

from .runtime import VERIFY_PREFIX

__all__ = ["RecentRequests", "WindowStats", "bucket_counts", "psi", "window_stats"]


class RecentRequests:
    """The features of a model's last logged requests, as the store knew them at a moment."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def recent(self, model: str, limit: int, since: datetime,
               as_of: datetime) -> list[dict[str, Any]]:
        """Up to ``limit`` answered requests of ``model`` served since ``since`` and ingested
        by ``as_of``, newest first, as instances (``request_id``, ``features``)."""
        pit = PointInTime(as_of)
        rows = self.store.query(
            f"SELECT request_id, numeric_features FROM {pit.source('inference_logs')} "
            "WHERE model = {model:String} AND status = 'ok' "
            "AND event_time >= {since:DateTime64(3, 'UTC')} "
            "ORDER BY event_time DESC LIMIT {limit:UInt32}",
            {**pit.params, "model": model, "since": since, "limit": limit})
        return [{"request_id": rid, "features": dict(features)} for rid, features in rows]


@dataclass(frozen=True)
class WindowStats:
    """One version's traffic in a window, from its payload logs."""

    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    deciles: tuple[float, ...]  # prediction deciles (1..9), empty without predictions

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


def window_stats(store: Store, model: str, version: str, start: datetime,
                 end: datetime) -> WindowStats:
    """Requests, errors, latency quantiles and prediction deciles of one version."""
    row = store.query(
        "SELECT count(), countIf(status != 'ok'), quantileExact(0.5)(latency_ms), "
        "quantileExact(0.99)(latency_ms), "
        "quantilesExactIf(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)(prediction, "
        "  prediction IS NOT NULL) "
        "FROM inference_logs FINAL "
        "WHERE model = {model:String} AND model_version = {version:String} "
        "AND event_time >= {start:DateTime64(3, 'UTC')} "
        "AND event_time < {end:DateTime64(3, 'UTC')} "
        "AND NOT startsWith(request_id, {verify:String})",
        {"model": model, "version": version, "start": start, "end": end,
         "verify": VERIFY_PREFIX})[0]
    requests, errors, p50, p99, deciles = row
    finite = [float(d) for d in deciles if d is not None and math.isfinite(d)]
    return WindowStats(int(requests), int(errors), _number(p50) if requests else None,
                       _number(p99) if requests else None,
                       tuple(finite) if requests - errors > 0 else ())


def bucket_counts(store: Store, model: str, version: str, start: datetime, end: datetime,
                  edges: tuple[float, ...]) -> list[int]:
    """How many of a version's predictions in a window fall in each bucket ``edges`` draw
    (``len(edges) + 1`` buckets; bucket i holds predictions above i edges)."""
    rows = store.query(
        "SELECT arrayCount(e -> prediction > e, {edges:Array(Float64)}) AS bucket, count() "
        "FROM inference_logs FINAL "
        "WHERE model = {model:String} AND model_version = {version:String} "
        "AND prediction IS NOT NULL "
        "AND event_time >= {start:DateTime64(3, 'UTC')} "
        "AND event_time < {end:DateTime64(3, 'UTC')} "
        "AND NOT startsWith(request_id, {verify:String}) GROUP BY bucket",
        {"edges": list(edges), "model": model, "version": version,
         "start": start, "end": end, "verify": VERIFY_PREFIX})
    counts = [0] * (len(edges) + 1)
    for bucket, count in rows:
        counts[int(bucket)] = int(count)
    return counts


def psi(expected: list[int], actual: list[int]) -> float | None:
    """The population stability index of ``actual`` against ``expected`` bucket counts
    (empty buckets floored at 1e-4 of their side); None when either side is empty."""
    total_e, total_a = sum(expected), sum(actual)
    if not total_e or not total_a:
        return None
    value = 0.0
    for e, a in zip(expected, actual, strict=True):
        pe, pa = max(e / total_e, 1e-4), max(a / total_a, 1e-4)
        value += (pa - pe) * math.log(pa / pe)
    return value


def _number(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None
