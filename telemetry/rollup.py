"""Keep the per-minute rollup equal to the inference logs it summarises.

``inference_rollup_1m`` is filled by a materialized view on every insert into
``inference_logs``. Two things make it diverge: a process killed between the table's insert
and the view's (the batch is in the logs, not in the rollup, and the client's resend is then
a duplicate), and two writers racing with the same records (both insert, the logs collapse
them on merge, the view counted both). The reconciler repairs both after the fact: for every
(model, version, minute) that received rows since a moment, it compares the rollup's count
with the deduplicated count of the logs, and rebuilds each minute that differs from the logs.

It runs once over the last day when Watchloop starts (a crash is repaired at the restart) and
then every ``interval_s`` over what was ingested since its previous pass. Rebuilding one
minute is a lightweight DELETE of its rollup rows and an INSERT ... SELECT from the logs; a
view insert landing in between is found different on the next pass and rebuilt again.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from .clock import Clock, utc_now
from .errors import StoreError
from .store import Store

log = logging.getLogger("watchloop.rollup")

_TOUCHED = """
SELECT DISTINCT model, model_version, toStartOfMinute(event_time) AS minute
FROM inference_logs WHERE ingest_time >= {since:DateTime64(3, 'UTC')}
"""

_DIFFERENT = """
SELECT model, model_version, minute
FROM (
    SELECT model, model_version, toStartOfMinute(event_time) AS minute, count() AS n
    FROM inference_logs FINAL
    WHERE event_time >= {low:DateTime64(3, 'UTC')} AND event_time < {high:DateTime64(3, 'UTC')}
      AND (model, model_version, minute) IN {keys:Array(Tuple(String, String, DateTime))}
    GROUP BY model, model_version, minute
) AS logs
FULL OUTER JOIN (
    SELECT model, model_version, minute, sum(requests) AS n
    FROM inference_rollup_1m
    WHERE (model, model_version, minute) IN {keys:Array(Tuple(String, String, DateTime))}
    GROUP BY model, model_version, minute
) AS rollup USING (model, model_version, minute)
WHERE logs.n != rollup.n
SETTINGS join_use_nulls = 0
"""

_DELETE = """
DELETE FROM inference_rollup_1m
WHERE (model, model_version, minute) IN {keys:Array(Tuple(String, String, DateTime))}
"""

# The view's SELECT (migration 0001), over the deduplicated logs of the given minutes.
_REBUILD = """
INSERT INTO inference_rollup_1m
SELECT
    toStartOfMinute(event_time) AS minute,
    model,
    model_version,
    count() AS requests,
    countIf(status != 'ok') AS errors,
    sum(latency_ms) AS latency_sum_ms,
    max(latency_ms) AS latency_max_ms,
    quantilesState(0.5, 0.9, 0.95, 0.99)(latency_ms) AS latency_quantiles
FROM inference_logs FINAL
WHERE event_time >= {low:DateTime64(3, 'UTC')} AND event_time < {high:DateTime64(3, 'UTC')}
  AND (model, model_version, minute) IN {keys:Array(Tuple(String, String, DateTime))}
GROUP BY minute, model, model_version
"""

#: How far back the first pass looks: a crash up to a day before the restart is repaired.
STARTUP_LOOKBACK = timedelta(days=1)


class RollupReconciler:
    """Rebuilds rollup minutes that differ from the deduplicated logs (see module docs)."""

    name = "rollup"

    def __init__(self, store: Store, *, interval_s: float = 30.0,
                 clock: Clock = utc_now,
                 chunk: int = 500) -> None:
        self._store = store
        self._interval_s = interval_s
        self._clock = clock
        self._chunk = chunk
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def reconcile(self, ingested_since: datetime) -> int:
        """Rebuild every minute holding rows ingested since then whose rollup count differs
        from its logs; return how many minutes were rebuilt."""
        touched = self._store.query(_TOUCHED, {"since": ingested_since})
        rebuilt = 0
        for start in range(0, len(touched), self._chunk):
            keys = touched[start:start + self._chunk]
            bounds = {"keys": keys, "low": min(k[2] for k in keys),
                      "high": max(k[2] for k in keys) + timedelta(minutes=1)}
            different = self._store.query(_DIFFERENT, bounds)
            if not different:
                continue
            repair = {**bounds, "keys": different}
            self._store.command(_DELETE, {"keys": different})
            self._store.command(_REBUILD, repair)
            rebuilt += len(different)
        if rebuilt:
            log.info("rollup: rebuilt %d minute(s) that differed from the logs", rebuilt)
        return rebuilt

    def start(self) -> None:
        """Reconcile the last day now, then keep reconciling in a background thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rollup", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the pass in progress."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def run_pass(self, since: datetime) -> datetime:
        """Reconcile what was ingested since ``since``; return where the next pass starts.

        The passes overlap, so a batch being written when one began is seen by the next. A
        pass that rebuilt minutes keeps its start: another process's reconciler may have
        rebuilt the same minute at the same moment (both deletes before both inserts, which
        counts it twice), and only a pass that finds nothing to repair moves the window on.
        """
        started = self._clock()
        if self.reconcile(since):
            return since
        return started - timedelta(seconds=max(5.0, self._interval_s))

    def _run(self) -> None:
        since = self._clock() - STARTUP_LOOKBACK
        while True:
            try:
                since = self.run_pass(since)
            except StoreError as exc:
                log.warning("rollup: reconciling failed, trying again later: %s", exc)
            if self._stop.wait(self._interval_s):
                return
