"""Model: one model's latency, throughput and errors by version, drift per feature over time,
a feature's reference distribution against the current one, quality from labels, the GPUs
and serving backend under it, and its deployments."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from dashboard import data, widgets

_QUALITY = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "mae", "rmse",
            "label_coverage")


def _layout(figure: go.Figure, height: int = 280) -> go.Figure:
    figure.update_layout(height=height, margin={"l": 0, "r": 0, "t": 30, "b": 0})
    return figure


def _traffic(model: str, span: data.Span) -> None:
    per_minute = data.traffic_per_minute(model, span)
    totals = data.version_traffic(model, span)
    if per_minute.empty:
        st.info(f"No traffic from {model} in this time range.")
        return
    columns = st.columns(len(totals))
    for column, row in zip(columns, totals.itertuples(), strict=True):
        column.metric(f"v{row.model_version}", f"{widgets.count(row.requests)} requests",
                      help=f"p99 {widgets.ms(row.p99_ms)} · error rate "
                           f"{widgets.pct(row.errors / row.requests if row.requests else None)}")
    shown = pd.DataFrame({
        "version": "v" + totals["model_version"],
        "requests": totals["requests"].map(widgets.count),
        "per minute": (totals["requests"] / span.minutes).map(lambda v: f"{v:,.1f}"),
        "p50": totals["p50_ms"].map(widgets.ms), "p95": totals["p95_ms"].map(widgets.ms),
        "p99": totals["p99_ms"].map(widgets.ms),
        "error rate": (totals["errors"] / totals["requests"]).map(widgets.pct)})
    st.dataframe(shown, hide_index=True, width="stretch")
    left, middle, right = st.columns(3)
    long = per_minute.melt(id_vars=["minute", "model_version"],
                           value_vars=["p50_ms", "p95_ms", "p99_ms"], var_name="quantile",
                           value_name="ms")
    long["series"] = "v" + long["model_version"] + " " + long["quantile"].str[:3]
    left.plotly_chart(_layout(px.line(long, x="minute", y="ms", color="series",
                                      title="Latency (ms)")), width="stretch")
    middle.plotly_chart(_layout(px.line(per_minute, x="minute", y="requests",
                                        color="model_version", title="Requests per minute")),
                        width="stretch")
    right.plotly_chart(_layout(px.line(per_minute, x="minute", y="error_rate",
                                       color="model_version", title="Error rate")
                               .update_yaxes(tickformat=".1%")), width="stretch")


def _drift(model: str, version: str, span: data.Span) -> None:
    scores = data.drift_scores(model, version, span)
    if scores.empty:
        st.info("No drift results for this version in this time range (no reference profile "
                "yet, or the monitors have not run).")
        return
    newest = scores[scores.ts == scores.ts.max()].sort_values("score", ascending=False)
    top = newest.head(5)
    st.markdown("Top drifting features now: " + ", ".join(
        f"**{r.feature}** {widgets.number(r.score)}{' ⚠️' if r.drifted else ''}"
        for r in top.itertuples()))
    heat = scores.pivot_table(index="feature", columns="ts", values="score", aggfunc="max")
    figure = px.imshow(heat, aspect="auto", color_continuous_scale="OrRd",
                       labels={"color": "score", "x": "evaluated at", "y": "feature"})
    st.plotly_chart(_layout(figure, 80 + 24 * len(heat)), width="stretch")
    feature = st.selectbox("Feature", list(newest.feature), key="model-feature")
    shares = data.feature_distribution(model, version, feature, span)
    if shares.empty:
        st.caption(f"No numeric reference profile of {feature} to compare with.")
        return
    long = shares.melt(id_vars=["bin", "order"], value_vars=["reference", "current"],
                       var_name="distribution", value_name="share")
    figure = px.bar(long, x="bin", y="share", color="distribution", barmode="overlay",
                    opacity=0.6, title=f"{feature}: reference vs last {span.minutes} minutes "
                                       f"({int(shares.current_rows.sum()):,} rows)")
    st.plotly_chart(_layout(figure.update_yaxes(tickformat=".0%")), width="stretch")


def _quality(model: str, version: str, span: data.Span) -> None:
    quality = data.monitor_metrics(model, version, "quality", span)
    if quality.empty:
        st.info("No quality results: labels have not arrived for this time range.")
        return
    newest = quality[quality.ts == quality.ts.max()]
    labels = int(newest.sample_size.iloc[0])
    if newest.status.iloc[0] != "ok":
        st.warning(f"Too few labels to judge: {labels:,} joined in the newest window.")
    shown = [m for m in _QUALITY if m in set(newest.metric)]
    values = newest.set_index("metric").value
    for column, name in zip(st.columns(max(len(shown), 1)), shown, strict=False):
        column.metric(name, widgets.number(values[name]), help=f"from {labels:,} labels")
    figure = px.line(quality[quality.metric.isin(shown)], x="ts", y="value", color="metric",
                     markers=True, hover_data=["sample_size"])
    st.plotly_chart(_layout(figure), width="stretch")


def _serving(model: str, span: data.Span) -> None:
    state, metrics = data.serving(model, span)
    if state is None:
        st.caption("No promotion recorded: which version serves is unknown to Watchloop.")
    else:
        st.markdown(f"Serving **v{state['model_version']}** on **{state['server']}** since "
                    f"{widgets.age(state['ts'])} ({state['action']} by {state['actor']}"
                    + (f": {state['reason']}" if state["reason"] else "") + ")")
    if not metrics.empty:
        shown = metrics.pivot_table(index=["server", "model_version"], columns="metric",
                                    values="value", aggfunc="last").reset_index()
        st.dataframe(shown, hide_index=True, width="stretch")


def body() -> None:
    model = widgets.model()
    if model is None:
        st.info("No model yet: Watchloop shows a model once it has traffic, monitor results "
                "or deployments.")
        return
    span = widgets.span()
    st.header(model)
    st.subheader("Latency, throughput and errors")
    _traffic(model, span)
    versions = sorted(set(data.models(span).query("model == @model").model_version) - {""})
    if versions:
        version = st.selectbox("Version", versions, index=len(versions) - 1,
                               key="model-version")
        st.subheader(f"Drift of v{version}")
        _drift(model, version, span)
        st.subheader(f"Quality of v{version} from labels")
        _quality(model, version, span)
    st.subheader("Serving")
    _serving(model, span)
    gpus = data.gpus(span)
    if gpus.empty:
        st.caption("No GPU readings in this time range.")
    else:
        st.dataframe(gpus, hide_index=True, width="stretch")
    deployments = data.deployments(model, 20)
    if deployments.empty:
        st.info("No deployments recorded: deploy with `watchloop serve deploy` or the feedback "
                "loop.")
    else:
        st.dataframe(deployments.drop(columns=["details", "model"]), hide_index=True,
                     width="stretch")


def main() -> None:
    widgets.page_setup("Model")
    widgets.refreshing(body)()


main()
