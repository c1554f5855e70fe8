"""Drift, model quality, traffic and SLOs of a model version, as the monitor runner wrote them."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard import data, widgets

_STATUS = {"insufficient_data": "Insufficient data", "no_data": "No data"}


def _line(frame: pd.DataFrame, y: str, color: str | None = None) -> None:
    figure = px.line(frame, x="ts", y=y, color=color, markers=True)
    figure.update_layout(height=280, margin={"l": 0, "r": 0, "t": 10, "b": 0})
    st.plotly_chart(figure, width="stretch")


def main() -> None:
    st.title("Drift & quality")
    versions = data.monitored_versions()
    if versions.empty:
        st.info("No monitor results yet: the monitor runner writes them once a model version "
                "has traffic (and, for drift, a reference profile).")
        return
    choices = [f"{m} · v{v}" for m, v in zip(versions.model, versions.model_version,
                                               strict=True)]
    picked = st.selectbox("Model version", choices, key="drift_version")
    model, version = versions.iloc[choices.index(picked)][["model", "model_version"]]
    minutes = widgets.time_window(key="drift_window", default="24 hours")

    st.subheader("Drift")
    latest = data.latest_drift(model, version)
    if latest.empty:
        st.info("No drift results for this version (no reference profile, or too few rows).")
    elif (dataset := latest[latest.feature == "__dataset__"].iloc[0]).status != "ok":
        st.warning(f"{_STATUS[dataset.status]}: {dataset.window_rows:,} requests in the "
                   "newest window; drift is scored from the monitors' `min_rows` on.")
    else:
        col1, col2, col3 = st.columns(3)
        col1.metric("Drifted features", f"{dataset.score:.0%}",
                    help=f"Dataset drift when at least {dataset.threshold:.0%} drift")
        col2.metric("Dataset drift", "yes" if dataset.drifted else "no")
        col3.metric("Requests in window", f"{dataset.window_rows:,}")
        columns = latest[latest.feature != "__dataset__"]
        st.dataframe(columns[["feature", "kind", "method", "score", "threshold", "p_value",
                              "drifted", "status", "sample_size"]],
                     hide_index=True, width="stretch")
        history = data.drift_history(model, version, minutes)
        if not history.empty:
            _line(history[history.feature != "__dataset__"], "score", "feature")

    st.subheader("Quality")
    quality = data.monitor_metrics(model, version, "quality", minutes)
    if quality.empty:
        st.info("No quality results: labels have not arrived for this window yet.")
    else:
        newest_rows = quality[quality.ts == quality.ts.max()]
        newest = newest_rows.set_index("metric").value
        status = newest_rows.status.iloc[0]
        labelled = int(newest_rows.sample_size.iloc[0])
        if status != "ok":
            st.warning(f"{_STATUS[status]}: {labelled:,} labels joined in the newest window; "
                       "quality is scored from the monitors' `min_labels` on.")
        shown = [m for m in ("accuracy", "precision", "recall", "roc_auc", "log_loss", "mae",
                             "rmse", "label_coverage") if m in newest]
        for column, name in zip(st.columns(len(shown)), shown, strict=True):
            value = newest[name]
            column.metric(name, "—" if pd.isna(value) else f"{value:.3f}",
                          help=f"from {labelled:,} labels")
        _line(quality[quality.metric.isin(shown)], "value", "metric")

    st.subheader("Latency and errors")
    traffic = data.monitor_metrics(model, version, "latency", minutes)
    if traffic.empty:
        st.info("No traffic results in this time range.")
    else:
        chosen = traffic[traffic.metric.isin(["latency_p50_ms", "latency_p95_ms",
                                              "latency_p99_ms"])]
        _line(chosen, "value", "metric")

    st.subheader("SLOs")
    slos = data.latest_slos(model, version)
    if slos.empty:
        st.info("No SLO applies to this version.")
    else:
        st.dataframe(slos, hide_index=True, width="stretch")


main()
