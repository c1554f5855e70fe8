"""What the store holds: tables, row counts, freshness, traffic and dead letters."""

from __future__ import annotations

from datetime import datetime

import plotly.express as px
import streamlit as st

from dashboard import data, widgets
from telemetry.clock import utc, utc_now


def _age(moment: object) -> str:
    if not isinstance(moment, datetime):
        return "never"
    seconds = (utc_now() - utc(moment)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{max(seconds, 0):.0f}s ago"


def main() -> None:
    st.title("Store")
    store = data.get_store()
    st.caption(f"Store: `{store.location.display}` · database `{store.database}`")

    tables = data.table_summaries()
    logs = tables.set_index("table").loc["inference_logs"]
    dead = tables.set_index("table").loc["dead_letters"]
    col1, col2, col3 = st.columns(3)
    col1.metric("Inference logs", f"{int(logs['rows']):,}")
    col2.metric("Newest ingest", _age(logs["newest ingest"]))
    col3.metric("Dead letters", f"{int(dead['rows']):,}")

    st.subheader("Tables")
    st.dataframe(tables, hide_index=True, width="stretch")

    st.subheader("Traffic")
    minutes = widgets.time_window()
    per_minute = data.requests_per_minute(minutes)
    if per_minute.empty:
        st.info("No inference logs in this time range yet.")
    else:
        figure = px.line(per_minute, x="minute", y="requests", color="version", markers=True)
        figure.update_layout(height=300, margin={"l": 0, "r": 0, "t": 10, "b": 0})
        st.plotly_chart(figure, width="stretch")
        st.dataframe(data.model_traffic(minutes), hide_index=True, width="stretch")

    st.subheader("Dead letters")
    reasons = data.dead_letter_reasons()
    if reasons.empty:
        st.success("No dead letters: every record received was stored.")
    else:
        st.dataframe(reasons, hide_index=True, width="stretch")
        with st.expander("Newest dead-lettered records"):
            st.dataframe(data.recent_dead_letters(), hide_index=True, width="stretch")


main()
