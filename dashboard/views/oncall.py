"""On call: is anything broken, and why? Every model version at a glance, firing alerts
first, each with the series that made it fire and the buttons to acknowledge or silence it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import data, widgets
from dashboard.grid import Grid
from dashboard.status import HEX

SILENCE_FOR = {"30 minutes": 30, "1 hour": 60, "4 hours": 240, "1 day": 1440}
_STATE_ICON = {"firing": "🔴", "pending": "🟠", "nodata": "⚪", "error": "⚠️"}


def _grid_table(grid: Grid) -> pd.DataFrame:
    def cell(row: Any, key: str, text: str) -> str:
        status = row.statuses.get(key)
        return widgets.badge(status, text) if status is not None else text

    rows = []
    for r in grid.versions:
        quality = (f"{r.quality_metric} {widgets.number(r.quality)} · {r.labels:,} labels"
                   if r.quality_metric else "—")
        rows.append({
            "status": r.overall.icon, "model": r.model, "version": r.version,
            "traffic": cell(r, "traffic", f"{r.per_minute or 0:,.1f}/min"),
            "p99 latency": cell(r, "latency", widgets.ms(r.p99_ms)),
            "error rate": cell(r, "errors", widgets.pct(r.error_rate)),
            "budget left": cell(r, "burn", widgets.pct(r.budget_left, 1)),
            "drift": cell(r, "drift", f"{widgets.pct(r.drift_share, 0)} of features"
                          if r.drift_share is not None else "—"),
            "quality": cell(r, "quality", quality),
            "why": r.overall.reason,
        })
    return pd.DataFrame(rows)


def _why_chart(alert: dict[str, Any]) -> None:
    rule = data.rule(alert["rule"])
    if rule is None:
        st.caption(f"The rule {alert['rule']} is not in this console's configuration.")
        return
    series = data.why_it_fired(alert["rule"], alert["fingerprint"], widgets.span().end)
    if series["value"].isna().all():
        st.caption("No samples of its series in the rule's recent window.")
        return
    figure = go.Figure(go.Scatter(x=series["ts"], y=series["value"], mode="lines+markers",
                                  name="value", line={"color": HEX["red"]}))
    condition = rule.condition
    threshold = condition.value if condition is not None else (
        rule.burn_rate.factor if rule.burn_rate is not None else None)
    if threshold is not None:
        figure.add_hline(y=threshold, line_dash="dash", line_color="#555",
                         annotation_text=f"threshold {threshold:g}")
    if condition is not None and condition.recovery is not None:
        figure.add_hline(y=condition.recovery, line_dash="dot", line_color=HEX["green"],
                         annotation_text=f"recovers at {condition.recovery:g}")
    figure.update_layout(height=220, margin={"l": 0, "r": 0, "t": 10, "b": 0},
                         showlegend=False)
    st.plotly_chart(figure, width="stretch", key=f"why-{alert['fingerprint']}")


def _alert_card(alert: dict[str, Any]) -> None:
    fp = alert["fingerprint"]
    icon = _STATE_ICON.get(alert["state"], "❔")
    where = f"{alert['model']} v{alert['model_version']}" if alert["model"] else ""
    with st.container(border=True):
        # no HTML: model names and summaries come from outside
        st.markdown(f"#### {icon} {alert['state'].upper()} · {alert['rule']} · "
                    f"`{alert['severity']}` {where}")
        value = ("" if pd.isna(alert["value"])
                 else f" · value **{widgets.number(alert['value'], 4)}**")
        acked = f" · acknowledged by {alert['acked_by']}" if alert["acked_by"] else ""
        st.markdown(f"{alert['summary'] or 'No summary'} · since {widgets.age(alert['since'])}"
                    f"{value}{acked}")
        rule = data.rule(alert["rule"])
        runbook = rule.annotations.get("runbook_url") if rule is not None else None
        links = [f"[Alert history]({widgets.link('alerts', alert=fp)})"]
        if alert["model"]:
            links.append(f"[Model]({widgets.link('model', model=alert['model'])})")
        if runbook:
            links.append(f"[Runbook]({runbook})")
        st.markdown(" · ".join(links))
        _why_chart(alert)
        ack, silence = st.columns(2)
        if ack.button("Acknowledge", key=f"ack-{fp}", disabled=bool(alert["acked_by"])):
            _act(lambda a: a.acknowledge(fp, "acknowledged in the console"),
                 "Acknowledged")
        with silence.popover("Silence"):
            length = st.selectbox("For", list(SILENCE_FOR), key=f"silence-for-{fp}")
            comment = st.text_input("Why", key=f"silence-why-{fp}",
                                    placeholder="e.g. known incident INC-123")
            if st.button("Silence this alert", key=f"silence-{fp}", disabled=not comment):
                labels = alert["labels"] or {}
                matchers = [f"{k}={v}" for k, v in sorted(labels.items())
                            if k in ("alertname", "model", "version", "slo", "consumer_group")]
                matchers = matchers or [f"alertname={alert['rule']}"]
                _act(lambda a: a.silence(matchers, timedelta(minutes=SILENCE_FOR[length]),
                                         comment), "Silenced")


def _act(call: Any, done: str) -> None:
    widgets.act(call, done, stale=(data.active_alerts, data.grid))


def _platform(grid: Grid) -> None:
    for column, (name, (shown, status)) in zip(st.columns(len(grid.platform)),
                                               grid.platform.items(), strict=True):
        column.metric(f"{status.icon} {name}", shown, help=status.reason)


def body() -> None:
    span = widgets.span()
    grid = data.grid(span)
    firing = grid.firing
    if firing:
        pages = [a for a in firing if a["severity"] == "page"]
        st.error(f"**{len(firing)} alert{'s' * (len(firing) > 1)} firing** "
                 f"({len(pages)} paging): {', '.join(sorted({a['rule'] for a in firing}))}")
    elif grid.alerts:
        st.warning(f"**{len(grid.alerts)} alert(s) pending or without data**, none firing")
    else:
        st.success("**All clear**: no alert is firing or pending")
    _platform(grid)
    st.subheader("Model versions")
    if not grid.versions:
        st.info("No model has traffic or monitor results yet: send inference logs to the API "
                "(`POST /v1/logs`) or configure `collectors:` in watchloop.yaml.")
    else:
        table = _grid_table(grid)
        st.dataframe(widgets.colour_cells(table), hide_index=True, width="stretch")
        st.caption(f"{span.minutes} minutes of traffic; drift, quality and budgets are each "
                   "monitor's newest result. 🔴 a paging rule breached or firing · 🟠 pending, "
                   "a ticket rule, or past its SLO · 🟢 within its rules · ⚪ no or too little "
                   "data · ▫️ no rule watches it")
    if grid.alerts:
        st.subheader("Alerts")
        for alert in grid.alerts:
            _alert_card(alert)


def main() -> None:
    widgets.page_setup("On call")
    widgets.refreshing(body)()


main()
