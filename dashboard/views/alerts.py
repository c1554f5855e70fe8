"""Alerts: firing, pending and resolved alerts with a timeline per rule, silences (create,
expire), and a backtest of any rule, or of an edited copy, over stored history."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st
import yaml
from pydantic import ValidationError

from dashboard import data, widgets
from dashboard.actions import ActionError

STATE_ICON = {"firing": "🔴", "pending": "🟠", "nodata": "⚪", "error": "⚠️", "resolved": "🟢",
              "inactive": "▫️"}
BACKTEST_RANGES = {"24 hours": 1, "7 days": 7, "30 days": 30}


def _alerts() -> None:
    alerts = data.all_alerts()
    focus = st.query_params.get("alert")
    if alerts.empty:
        st.success("No alert has fired or been pending yet.")
        return
    alerts = alerts.sort_values("since", ascending=False)
    shown = pd.DataFrame({
        "state": [f"{STATE_ICON.get(s, '❔')} {s}" for s in alerts.state],
        "rule": alerts.rule, "severity": alerts.severity,
        "model": alerts.model + alerts.model_version.map(lambda v: f" v{v}" if v else ""),
        "value": alerts.value.map(lambda v: widgets.number(v, 4)),
        "since": alerts.since.map(widgets.age), "acknowledged by": alerts.acked_by,
        "summary": alerts.summary, "fingerprint": alerts.fingerprint})
    if focus:
        picked = shown[shown.fingerprint == focus]
        if picked.empty:
            st.warning(f"No alert {focus} in the store.")
        else:
            st.info(f"Alert {focus}: {picked.iloc[0].state} · {picked.iloc[0].rule}")
    st.dataframe(widgets.colour_cells(shown), hide_index=True, width="stretch")


def _timeline(span: data.Span) -> None:
    events = data.alert_timeline(span)
    if events.empty:
        st.caption("No alert changed state in this time range.")
        return
    events = events.sort_values(["fingerprint", "ts"])
    # the store's times are naive UTC: so is the end of the range, for plotly
    events["until"] = events.groupby("fingerprint").ts.shift(-1).fillna(
        pd.Timestamp(span.end).tz_localize(None))
    shown = events[events.state != "inactive"]
    figure = px.timeline(shown, x_start="ts", x_end="until", y="rule", color="state",
                         color_discrete_map={"firing": "#d62728", "pending": "#ff9f1c",
                                             "resolved": "#2ca02c", "nodata": "#9e9e9e",
                                             "error": "#7f7f7f"},
                         hover_data=["model", "model_version", "value"])
    figure.update_layout(height=80 + 30 * shown.rule.nunique(),
                         margin={"l": 0, "r": 0, "t": 10, "b": 0})
    st.plotly_chart(figure, width="stretch")


def _silences() -> None:
    reader = widgets.actions(reading=True)
    if reader is None:
        return
    try:
        silences = reader.silences()
    except ActionError as exc:
        st.error(str(exc))
        return
    active = [s for s in silences if s["active"]]
    if not active:
        st.caption("No active silence.")
    for silence in active:
        left, right = st.columns([5, 1])
        left.markdown(f"🔕 `{', '.join(silence['matchers'])}` until {silence['ends']} — "
                      f"{silence['comment']} (by {silence['author']})")
        if right.button("Expire", key=f"expire-{silence['id']}"):
            _change(lambda a, sid=silence["id"]: a.expire(sid), "Expired")
    with st.form("new-silence"):
        matchers = st.text_input("Matchers", placeholder="alertname=fraud-p99, model=fraud")
        hours = st.number_input("Hours", min_value=0.25, max_value=24 * 14.0, value=1.0)
        comment = st.text_input("Why")
        if st.form_submit_button("Create silence"):
            given = [m.strip() for m in matchers.split(",") if m.strip()]
            _change(lambda a: a.silence(given, timedelta(hours=hours), comment),
                    "Silence created")


def _change(call: Any, done: str) -> None:
    widgets.act(call, done, stale=(data.all_alerts, data.alert_actions))


def _backtest() -> None:
    rules = data.settings().rules
    if not rules:
        st.info("No alert rules are configured (the alerts: section of watchloop.yaml).")
        return
    names = [r.name for r in rules]
    name = st.selectbox("Rule", names, key="backtest-rule")
    rule = rules[names.index(name)]
    original = yaml.safe_dump(json.loads(rule.model_dump_json(by_alias=True,
                                                               exclude_defaults=True)),
                              sort_keys=False)
    text = st.text_area("Rule (edit a copy to try a change)", original, height=200,
                        key=f"backtest-yaml-{name}")
    days = BACKTEST_RANGES[st.selectbox("Over the last", list(BACKTEST_RANGES),
                                        key="backtest-range")]
    if not st.button("Run backtest", key="backtest-run"):
        return
    try:
        edited = type(rule).model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as exc:
        st.error(f"The rule is not valid: {exc}")
        return
    end = widgets.span().end.replace(second=0)
    try:
        result = data.backtest(edited.model_dump_json(by_alias=True), end - timedelta(days=days),
                               end)
    except ValueError as exc:
        st.error(str(exc))
        return
    left, middle, right = st.columns(3)
    left.metric("Firings", f"{result['firings']:,}")
    middle.metric("Pages per week", f"{result['pages_per_week']:.1f}")
    right.metric("Time firing", widgets.seconds(result["time_firing_s"]))
    if result["alerts"]:
        fired = pd.DataFrame(result["alerts"])
        fired["labels"] = fired["labels"].map(lambda d: ", ".join(f"{k}={v}"
                                                                 for k, v in d.items()))
        fired["until"] = fired.resolved_at.fillna(end.isoformat())
        figure = px.timeline(fired, x_start="fired_at", x_end="until", y="labels",
                             hover_data=["peak"])
        figure.update_layout(height=80 + 30 * fired.labels.nunique(),
                             margin={"l": 0, "r": 0, "t": 10, "b": 0})
        st.plotly_chart(figure, width="stretch")
        st.dataframe(fired[["labels", "fired_at", "resolved_at", "peak"]], hide_index=True,
                     width="stretch")
    else:
        st.success("It would not have fired in this range.")
    if edited.query is not None:
        _caught_vs_hit(edited, end - timedelta(days=days), end)


def _caught_vs_hit(rule: Any, start: Any, end: Any) -> None:
    """For a query rule: the requests it would have hit, and how many were positives."""
    found = data.radar(rule.model_dump_json(by_alias=True), start, end)
    st.markdown("**Caught vs hit** (against the labels known now)")
    st.table(pd.DataFrame([
        {"": "requests hit", "count": widgets.count(found["hit"])},
        {"": "caught (labelled positive)", "count": widgets.count(found["caught"])},
        {"": "false hits (labelled negative)", "count": widgets.count(found["false_hits"])},
        {"": "hit, not yet labelled", "count": widgets.count(found["unlabelled_hits"])},
        {"": "positives in the range", "count": widgets.count(found["positives"])},
        {"": "precision", "count": widgets.pct(found["precision"], 1)},
        {"": "recall", "count": widgets.pct(found["recall"], 1)},
    ]).set_index(""))


def body() -> None:
    span = widgets.span()
    st.subheader("Alerts")
    _alerts()
    st.subheader("Timeline")
    _timeline(span)


def main() -> None:
    widgets.page_setup("Alerts")
    widgets.refreshing(body)()
    st.subheader("Silences")
    widgets.guarded(_silences)()
    st.subheader("Backtest a rule")
    widgets.guarded(_backtest)()
    st.subheader("Who did what")
    widgets.guarded(_who_did_what)()


def _who_did_what() -> None:
    actions = data.alert_actions()
    if actions.empty:
        st.caption("No acknowledgement or silence yet.")
    else:
        st.dataframe(actions, hide_index=True, width="stretch")


main()
