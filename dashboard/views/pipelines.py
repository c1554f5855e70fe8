"""Pipelines: Kafka consumer lag per group, topic and partition with its Burrow-style status,
the collectors and their throughput, dead letters by reason, and the freshness of each table."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard import data, widgets

LAG_ICON = {"OK": "🟢", "WARN": "🟠", "REWIND": "🟠", "STALL": "🔴", "STOP": "🔴"}


def _chart(figure: object) -> None:
    figure.update_layout(height=260, margin={"l": 0, "r": 0, "t": 30, "b": 0})
    st.plotly_chart(figure, width="stretch")


def _lag(span: data.Span) -> None:
    lag = data.kafka_lag(span)
    if lag.empty:
        st.info("No consumer lag samples in this time range: add a `kafka-lag` poller under "
                "`collectors.pollers` in watchloop.yaml.")
        return
    for row in lag[lag.status != "OK"].itertuples():
        st.warning(f"{LAG_ICON.get(row.status, '❔')} **{row.consumer_group}** on "
                   f"`{row.topic}`: {row.status} — {row.reason}")
    shown = pd.DataFrame({
        "status": [f"{LAG_ICON.get(s, '❔')} {s}" for s in lag.status],
        "group": lag.consumer_group, "topic": lag.topic,
        "lag (messages)": lag.lag_messages.map(widgets.count),
        "lag (seconds)": lag.lag_seconds.map(widgets.seconds),
        "partitions": lag.partitions, "reason": lag.reason, "as of": lag.as_of.map(widgets.age)})
    st.dataframe(widgets.colour_cells(shown), hide_index=True, width="stretch")
    history = data.lag_history(span)
    if not history.empty:
        history["series"] = (history.consumer_group + " " + history.topic + "/"
                             + history.partition.astype(str))
        left, right = st.columns(2)
        with left:
            _chart(px.line(history, x="ts", y="lag_messages", color="series",
                           title="Lag (messages)"))
        with right:
            _chart(px.line(history, x="ts", y="lag_seconds", color="series",
                           title="Lag (seconds)"))


def _collectors(span: data.Span) -> None:
    health = data.collector_health()
    if health.empty:
        st.info("No collector has reported yet: configure `collectors:` in watchloop.yaml.")
        return
    for row in health[health.last_error != ""].itertuples():
        st.error(f"🔴 **{row.collector}**: {row.last_error}")
    shown = pd.DataFrame({
        "status": ["🔴 failing" if e else "🟢 ok" for e in health.last_error],
        "collector": health.collector, "kind": health.kind,
        "stored": health.rows_out.map(widgets.count),
        "dead letters": health.dead_letters.map(widgets.count),
        "duplicates": health.duplicates.map(widgets.count),
        "lag": health.lag.map(widgets.count),
        "last success": health.last_success.map(widgets.age), "last error": health.last_error})
    st.dataframe(widgets.colour_cells(shown), hide_index=True, width="stretch")
    throughput = data.collector_throughput(span)
    if not throughput.empty:
        _chart(px.bar(throughput, x="minute", y="rows", color="collector",
                      title="Rows stored per minute"))


def _dead_letters(span: data.Span) -> None:
    reasons = data.dead_letter_reasons()
    if reasons.empty:
        st.success("No dead letters: every record received was stored.")
        return
    over_time = data.dead_letters_over_time(span)
    if not over_time.empty:
        _chart(px.bar(over_time, x="minute", y="records", color="reason",
                      title="Dead letters per minute by reason"))
    shown = reasons.assign(records=reasons.records.map(widgets.count),
                           last_seen=reasons.last_seen.map(widgets.age))
    st.dataframe(shown, hide_index=True, width="stretch")
    with st.expander("Newest dead-lettered records"):
        st.dataframe(data.recent_dead_letters(), hide_index=True, width="stretch")


def _freshness() -> None:
    tables = data.table_summaries()
    store = data.get_store()
    st.caption(f"Store: `{store.location.display}` · database `{store.database}`")
    shown = pd.DataFrame({"table": tables.table, "rows": tables.rows.map(widgets.count),
                          "newest event": tables["newest event"].map(widgets.age),
                          "newest ingest": tables["newest ingest"].map(widgets.age)})
    st.dataframe(shown, hide_index=True, width="stretch")


def body() -> None:
    span = widgets.span()
    st.subheader("Kafka consumer lag")
    _lag(span)
    st.subheader("Collectors")
    _collectors(span)
    st.subheader("Dead letters")
    _dead_letters(span)
    st.subheader("Freshness")
    _freshness()


def main() -> None:
    widgets.page_setup("Pipelines")
    widgets.refreshing(body)()


main()
