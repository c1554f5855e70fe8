"""Lineage: every step from an alert to the serving version, as rows in the store.

``LineageLog.record`` writes one step of a retraining (table ``lineage``); the serving
side's steps (deploy, verify, promote, watch, rollback, retire) are already rows in
``deployments``. ``LineageLog.trace`` reads both for a model (or one version of it) and
puts the deployments of each version under the retraining that produced it, in time order:
what ``watchloop lineage`` prints and the console draws.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from telemetry.clock import utc_now
from telemetry.store import Store

__all__ = ["LineageLog", "Retraining"]

COLUMNS = ("ts", "ingest_time", "model", "model_version", "trigger_id", "step", "status",
           "actor", "reason", "ref", "details")
# The order of a retraining's steps when two share a timestamp.
STEPS = ("alert", "trigger", "run", "register", "gate", "deploy", "verify", "promote",
         "alias", "watch", "rollback", "retire")


@dataclass
class Retraining:
    """One retraining and what followed: its steps in order."""

    trigger_id: str
    model: str
    version: str = ""  # the version it registered, if it got that far
    steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        """The last step and its status (``promote ok``, ``gate failed``, ...)."""
        if not self.steps:
            return ""
        last = self.steps[-1]
        return f"{last['step']} {last['status']}"

    def step(self, name: str) -> dict[str, Any] | None:
        """The last row of step ``name``, or None."""
        found = [s for s in self.steps if s["step"] == name]
        return found[-1] if found else None


class LineageLog:
    """Writes and reads the ``lineage`` table."""

    def __init__(self, store: Store, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.clock = clock

    def record(self, model: str, trigger_id: str, step: str, status: str, *, actor: str,
               version: str = "", reason: str = "", ref: str = "",
               details: dict[str, Any] | None = None) -> None:
        now = self.clock()
        self.store.insert("lineage", [[
            now, now, model, version, trigger_id, step, status, actor, reason, ref,
            json.dumps(details or {}, default=str, sort_keys=True)]], list(COLUMNS))

    def trace(self, model: str, *, version: str | None = None,
              limit: int = 50) -> list[Retraining]:
        """The model's retrainings, newest first, each with its steps and the deployments of
        the version it produced; ``version`` keeps only the retraining of that version."""
        rows = self.store.query_dicts(
            "SELECT ts, model, model_version, trigger_id, step, status, actor, reason, ref, "
            "details FROM lineage WHERE model = {m:String} ORDER BY ts, trigger_id",
            {"m": model})
        retrainings: dict[str, Retraining] = {}
        for row in rows:
            row["details"] = json.loads(row["details"] or "{}")
            item = retrainings.setdefault(row["trigger_id"],
                                          Retraining(row["trigger_id"], model))
            item.steps.append(row)
            if row["model_version"]:
                item.version = row["model_version"]
        by_version = {r.version: r for r in retrainings.values() if r.version}
        deployments = self.store.query_dicts(
            "SELECT ts, model, model_version, action AS step, status, actor, reason, "
            "details FROM deployments WHERE model = {m:String} ORDER BY ts",
            {"m": model})
        for row in deployments:
            row["details"] = json.loads(row["details"] or "{}")
            # a rollback row names the version it went back to; it belongs to the one it
            # rolled back from
            version_of = (row["details"].get("from") if row["step"] == "rollback"
                          else row["model_version"])
            owner = by_version.get(version_of or "")
            if owner is not None:
                row.update(trigger_id=owner.trigger_id, ref="")
                owner.steps.append(row)
        for item in retrainings.values():
            item.steps.sort(key=lambda s: (s["ts"], _order(s["step"])))
        found = sorted(retrainings.values(), key=lambda r: r.steps[0]["ts"], reverse=True)
        if version is not None:
            found = [r for r in found if r.version == version]
        return found[:limit]


def _order(step: str) -> int:
    return STEPS.index(step) if step in STEPS else len(STEPS)
