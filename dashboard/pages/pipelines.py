"""Are the pipelines healthy? Collectors, Kafka consumer lag and GPUs, for the on-call."""

from __future__ import annotations

import streamlit as st

from dashboard import data, widgets

_STATUS_ICON = {"OK": "🟢", "WARN": "🟡", "REWIND": "🟠", "STALL": "🔴", "STOP": "⛔"}


def main() -> None:
    st.title("Pipelines")
    minutes = widgets.time_window(key="pipelines-window", default="15 minutes")

    st.subheader("Collectors")
    health = data.collector_health()
    if health.empty:
        st.info("No collector has reported yet: configure `collectors:` in watchloop.yaml.")
    else:
        failing = health[health["last_error"] != ""]
        for row in failing.itertuples():
            st.error(f"**{row.collector}**: {row.last_error}")
        st.dataframe(health, hide_index=True, width="stretch")

    st.subheader("Kafka consumer lag")
    lag = data.kafka_lag(minutes)
    if lag.empty:
        st.info("No consumer lag samples in this time range.")
    else:
        lag.insert(0, "", lag["status"].map(_STATUS_ICON).fillna("❔"))
        for row in lag[lag["status"] != "OK"].itertuples():
            st.warning(f"**{row.consumer_group}** on `{row.topic}`: {row.status} — {row.reason}")
        st.dataframe(lag, hide_index=True, width="stretch")

    st.subheader("GPUs")
    gpus = data.gpus(minutes)
    if gpus.empty:
        st.info("No GPU readings in this time range (no `nvml` or `dcgm-exporter` poller, "
                "or no GPU on the host).")
    else:
        st.dataframe(gpus, hide_index=True, width="stretch")


main()
