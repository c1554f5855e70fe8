"""Every change to serving is a row in ``deployments``: deploy, verify, promote, watch,
rollback, retire, with who or what did it and why."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from telemetry.clock import utc_now
from telemetry.store import Store

__all__ = ["DeploymentLog"]

COLUMNS = ("ts", "ingest_time", "model", "model_version", "server", "action", "status",
           "actor", "reason", "details")


class DeploymentLog:
    """Writes and reads the ``deployments`` table."""

    def __init__(self, store: Store, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.clock = clock

    def record(self, model: str, version: str, server: str, action: str, status: str,
               actor: str, reason: str = "", details: dict[str, Any] | None = None) -> None:
        """One row: ``action`` (deploy, verify, promote, watch, rollback, retire) ended with
        ``status`` (ok, failed, rejected, succeeded, inconclusive)."""
        now = self.clock()
        self.store.insert("deployments", [[
            now, now, model, version, server, action, status, actor, reason,
            json.dumps(details or {}, default=str, sort_keys=True)]], list(COLUMNS))

    def history(self, model: str, limit: int = 100) -> list[dict[str, Any]]:
        """The model's rows, newest first."""
        rows = self.store.query_dicts(
            "SELECT ts, model, model_version, server, action, status, actor, reason, details "
            "FROM deployments WHERE model = {model:String} ORDER BY ts DESC LIMIT {n:UInt32}",
            {"model": model, "n": limit})
        for row in rows:
            row["details"] = json.loads(row["details"] or "{}")
        return rows

    def previous_serving(self, model: str, current: str | None) -> str | None:
        """The version that served before ``current``: the newest successful promotion or
        rollback to another version that was never rolled back from."""
        row = self.store.query(
            "SELECT model_version FROM deployments WHERE model = {model:String} "
            "AND action IN ('promote', 'rollback') AND status = 'ok' "
            "AND model_version != {current:String} AND model_version NOT IN ("
            "  SELECT JSONExtractString(details, 'from') FROM deployments "
            "  WHERE model = {model:String} AND action = 'rollback' AND status = 'ok') "
            "ORDER BY ts DESC LIMIT 1",
            {"model": model, "current": current or ""})
        return row[0][0] if row else None
