"""The on-call status grid: every model version at a glance, and the platform under them.

``build_grid`` is a pure function of query results and the console's settings, so that the
page shows, and the tests check, the same numbers and colours (``dashboard.status``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drift.evidence import ratio

from .shared import ConsoleSettings
from .status import Cell, Status, judge, judge_burn, judge_latency, worst

#: Quality metrics in the order the grid prefers one when no rule names one.
QUALITY_PREFERENCE = ("roc_auc", "accuracy", "f1", "precision", "recall", "rmse", "mae",
                      "log_loss")
_LAG_STATUS = {"OK": "green", "WARN": "amber", "REWIND": "amber", "STALL": "red", "STOP": "red"}


@dataclass
class VersionRow:
    """One model version's numbers and the status of each."""

    model: str
    version: str
    requests: int = 0
    per_minute: float | None = None
    p99_ms: float | None = None
    error_rate: float | None = None
    budget_left: float | None = None  # of the worst SLO, a share of its period's budget
    slo: str = ""
    drift_share: float | None = None
    drift_rows: int = 0
    quality_metric: str = ""
    quality: float | None = None
    labels: int = 0
    statuses: dict[str, Status] = field(default_factory=dict)

    @property
    def overall(self) -> Status:
        return worst(self.statuses.values())


@dataclass
class Grid:
    """The grid's rows, the platform's tiles and the alerts they were judged with."""

    versions: list[VersionRow]
    platform: dict[str, tuple[str, Status]]  # tile -> (shown value, status)
    alerts: list[dict[str, Any]]

    @property
    def firing(self) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a["state"] == "firing"]


def _latency_threshold(slos: Sequence[Any], model: str, version: str) -> float | None:
    for slo in slos:
        if slo.kind == "latency" and slo.model in ("*", model) and slo.version in ("*",
                                                                                  version):
            return slo.threshold_ms
    return None


def _quality_metric(settings: ConsoleSettings, model: str, available: Mapping[str, Any]
                    ) -> str:
    for rule in settings.rules:
        series = rule.threshold.series if rule.threshold else None
        if (series is not None and series.monitor == "quality" and series.model in ("*", model)
                and series.metric in available):
            return series.metric
    return next((m for m in QUALITY_PREFERENCE if m in available), "")


def build_grid(*, traffic: list[dict], minutes: int, drift: list[dict], quality: list[dict],
               slo: list[dict], alerts: list[dict], lag: list[dict], collectors: list[dict],
               gpus: list[dict], settings: ConsoleSettings) -> Grid:
    """Judge every model version seen in traffic or monitor results, and the platform."""
    rules = settings.rules
    rows: dict[tuple[str, str], VersionRow] = {}

    def at(model: str, version: str) -> VersionRow:
        return rows.setdefault((model, version), VersionRow(model, version))

    for t in traffic:
        row = at(t["model"], t["model_version"])
        row.requests = int(t["requests"])
        row.per_minute = row.requests / minutes
        row.p99_ms = t["p99_ms"] if row.requests else None
        row.error_rate = ratio(int(t["errors"]), row.requests)
    for d in drift:
        row = at(d["model"], d["model_version"])
        row.drift_share, row.drift_rows = d["share"], int(d["rows"])
        row.statuses["drift"] = judge(rules, Cell("drift", "__dataset__"), row.model,
                                      row.version, d["share"], alerts=alerts,
                                      evidence=d["status"])
        if row.statuses["drift"].colour == "none" and d["drifted"]:
            row.statuses["drift"] = Status("amber", "dataset drift detected")
    by_version: dict[tuple[str, str], dict[str, dict]] = {}
    for q in quality:
        by_version.setdefault((q["model"], q["model_version"]), {})[q["metric"]] = q
    for (model, version), metrics in by_version.items():
        row = at(model, version)
        row.quality_metric = _quality_metric(settings, model, metrics)
        if not row.quality_metric:
            continue
        q = metrics[row.quality_metric]
        row.quality, row.labels = q["value"], int(q["sample_size"])
        row.statuses["quality"] = judge(
            rules, Cell("monitor", row.quality_metric, "quality"), model, version, q["value"],
            alerts=alerts, evidence=q["status"])
    burns: dict[tuple[str, str, str], dict[str, float | None]] = {}
    for s in slo:
        row = at(s["model"], s["model_version"])
        if s["metric"] == "burn_rate":
            burns.setdefault((row.model, row.version, s["slo"]), {})[s["window"]] = s["value"]
        elif s["metric"] == "error_budget_remaining" and s["value"] is not None and (
                row.budget_left is None or s["value"] < row.budget_left):
            row.budget_left, row.slo = s["value"], s["slo"]
    for (model, version, name), rates in burns.items():
        status = judge_burn(rules, name, model, version, rates, alerts=alerts)
        row = at(model, version)
        row.statuses["burn"] = worst([row.statuses.get("burn", status), status])
    for row in rows.values():
        row.statuses["latency"] = judge_latency(
            rules, row.model, row.version, row.p99_ms,
            _latency_threshold(settings.slos, row.model, row.version), alerts=alerts,
            requests=row.requests)
        row.statuses["errors"] = judge(rules, Cell("monitor", "error_rate", "latency"),
                                       row.model, row.version, row.error_rate, alerts=alerts)
        row.statuses["traffic"] = (Status("green", f"{row.requests:,} requests")
                                   if row.requests else Status("grey", "no requests"))
    # A result with no version (a monitor that ran before a model served anything, or a
    # model-wide series) is a row of its own only while the model has no version to show.
    versioned = {model for model, version in rows if version}
    shown = [r for r in rows.values() if r.version or r.model not in versioned]
    ordered = sorted(shown, key=lambda r: (-_rank(r.overall), r.model, r.version))
    return Grid(ordered, _platform(lag, collectors, gpus), alerts)


def _rank(status: Status) -> int:
    return {"none": 0, "green": 1, "grey": 2, "amber": 3, "red": 4}[status.colour]


def _platform(lag: list[dict], collectors: list[dict], gpus: list[dict]
              ) -> dict[str, tuple[str, Status]]:
    tiles: dict[str, tuple[str, Status]] = {}
    if lag:
        worst_lag = max(lag, key=lambda r: r["lag_seconds"] or 0)
        statuses = [Status(_LAG_STATUS.get(r["status"], "grey"),
                           f"{r['consumer_group']} on {r['topic']}: {r['status']}"
                           + (f", {r['reason']}" if r["reason"] else "")) for r in lag]
        tiles["Pipeline lag"] = (f"{worst_lag['lag_seconds'] or 0:,.1f} s", worst(statuses))
    else:
        tiles["Pipeline lag"] = ("—", Status("grey", "no consumer lag samples"))
    if collectors:
        failing = [c for c in collectors if c["last_error"]]
        tiles["Collectors"] = (
            f"{len(collectors) - len(failing)}/{len(collectors)} healthy",
            Status("red", "; ".join(f"{c['collector']}: {c['last_error']}" for c in failing))
            if failing else Status("green", "every collector stored its last batch"))
    else:
        tiles["Collectors"] = ("—", Status("grey", "no collector has reported"))
    utils = [g["util_percent"] for g in gpus if g["util_percent"] is not None]
    if utils:
        peak = max(utils)
        tiles["GPU saturation"] = (
            f"{peak:.0f}% peak of {len(utils)}",
            Status("amber", f"a GPU at {peak:.0f}% utilisation") if peak >= 95
            else Status("green", f"peak utilisation {peak:.0f}%"))
    else:
        tiles["GPU saturation"] = ("—", Status("grey", "no GPU readings"))
    return tiles
