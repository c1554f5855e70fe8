"""Threshold and burn-rate rules as Prometheus alerting rules over Watchloop's own gauges.

For teams that keep their alerting in Prometheus: ``watchloop rules export --prometheus``
writes a rule file (``promtool check rules`` accepts it) whose expressions read the gauges
``/metrics`` exports (``drift.metrics``). A rule Prometheus cannot evaluate from those
gauges (a query rule over raw logs, a drift score per feature, Kafka lag or GPU series that
Watchloop stores but does not export) is left out with the reason; a recovery threshold has
no PromQL form and is left out too (``keep_firing_for`` is kept).
"""

from __future__ import annotations

from typing import Any

from drift.settings import window_label

from .rules import Rule, Series

#: The gauge each monitor's series are exported as (``drift.metrics``)
_MONITOR_GAUGES = {"latency": "watchloop_model_traffic", "quality": "watchloop_model_quality"}


def export(rules: tuple[Rule, ...] | list[Rule]) -> tuple[dict[str, Any], list[str]]:
    """(a Prometheus rule file, the rules left out with why)."""
    exported, skipped = [], []
    for rule in rules:
        expr = _expr(rule)
        if isinstance(expr, str) and expr.startswith("!"):
            skipped.append(f"{rule.name}: {expr[1:]}")
            continue
        entry: dict[str, Any] = {"alert": rule.name, "expr": expr}
        if rule.for_:
            entry["for"] = window_label(rule.for_)
        if rule.keep_firing_for:
            entry["keep_firing_for"] = window_label(rule.keep_firing_for)
        entry["labels"] = {"severity": rule.severity, **rule.labels}
        if rule.annotations:
            entry["annotations"] = dict(rule.annotations)
        exported.append(entry)
    return {"groups": [{"name": "watchloop", "rules": exported}]}, skipped


def _expr(rule: Rule) -> str:
    if rule.burn_rate is not None:
        b = rule.burn_rate
        scope = _scope(b.model, b.version, slo=b.slo)
        long = _selector("watchloop_slo_burn_rate", scope, window=window_label(b.long))
        short = _selector("watchloop_slo_burn_rate", scope, window=window_label(b.short))
        return f"({long} > {b.factor:g}) and on(model, version, slo) ({short} > {b.factor:g})"
    if rule.query is not None:
        return "!a query rule reads raw inference logs, which Prometheus does not have"
    assert rule.threshold is not None
    gauge = _gauge(rule.threshold.series)
    if gauge.startswith("!"):
        return gauge
    return f"{gauge} {rule.threshold.op} {rule.threshold.value:g}"


def _gauge(series: Series) -> str:
    scope = _scope(series.model, series.version)
    if series.source == "drift":
        if series.metric != "__dataset__":
            return "!per-feature drift scores are not exported; the drift share is"
        return _selector("watchloop_drift_share", scope)
    if series.source != "monitor":
        return f"!{series.source} series are stored, not exported by Watchloop"
    if series.monitor == "slo" and series.metric == "burn_rate":
        return _selector("watchloop_slo_burn_rate", scope, **dict(sorted(series.labels.items())))
    gauge = _MONITOR_GAUGES.get(series.monitor or "")
    if gauge is None:
        return f"!{series.monitor} {series.metric} is not exported as a gauge"
    return _selector(gauge, scope, metric=series.metric)


def _scope(model: str, version: str, **more: str) -> dict[str, str]:
    scope = {k: v for k, v in (("model", model), ("version", version)) if v != "*"}
    return {**scope, **more}


def _selector(gauge: str, scope: dict[str, str], **more: str) -> str:
    matchers = ",".join(f'{k}="{_quote(v)}"' for k, v in {**scope, **more}.items())
    return f"{gauge}{{{matchers}}}" if matchers else gauge


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
