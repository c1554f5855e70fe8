"""Compare versions: two or more versions of one model side by side over the same window:
offline metrics and params of their training runs, live latency and errors, drift, quality
from labels with confidence intervals, prediction distributions, and the shadow-replay
agreement of their verification. The better value of each row is marked."""

from __future__ import annotations

import json
import math
import numbers
from typing import Any

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard import data, widgets

#: Rows where a lower value is better; the rest are better higher.
LOWER_IS_BETTER = {"p50 latency (ms)", "p99 latency (ms)", "error rate", "drifted features",
                   "log_loss", "mae", "rmse"}
PROPORTIONS = {"accuracy", "precision", "recall", "label_coverage"}


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion ``p`` from ``n`` trials."""
    if n <= 0:
        return (math.nan, math.nan)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def _offline(model: str, versions: list[str]) -> dict[str, dict[str, Any]]:
    """Each version's training run: from MLflow when the loop is configured, else from the
    lineage's record of the run (the same numbers, logged to both)."""
    found: dict[str, dict[str, Any]] = {v: {} for v in versions}
    runs = data.mlflow_versions(model, tuple(versions))
    for version, run in runs.items():
        if "error" in run:
            st.caption(f"v{version}: {run['error']}")
            continue
        found[version].update({f"offline {k}": v for k, v in run["metrics"].items()})
        found[version].update({f"param {k}": v for k, v in run["params"].items()})
        if "watchloop.gate.passed" in run["tags"]:
            found[version]["gate"] = ("passed" if run["tags"]["watchloop.gate.passed"] == "true"
                                      else "failed")
    for r in data.lineage(model):
        version = r["version"]
        if version not in found or runs.get(version, {}).get("params"):
            continue
        for step in r["steps"]:
            if step["step"] == "run" and step["status"] == "succeeded":
                d = step["details"]
                found[version].update({f"offline {k}": v
                                       for k, v in (d.get("metrics") or {}).items()})
                found[version].update({"training rows": d.get("rows"),
                                       "trained as of": d.get("as_of")})
            if step["step"] == "gate":
                found[version]["gate"] = step["status"]
    return found


def _agreement(model: str, versions: list[str]) -> dict[str, float]:
    found: dict[str, float] = {}
    deployments = data.deployments(model, 500)
    for row in deployments[deployments.action == "verify"].itertuples():
        details = json.loads(row.details or "{}")
        if row.model_version in versions and row.model_version not in found \
                and details.get("agreement") is not None:
            found[row.model_version] = details["agreement"]
    return found


def _interval(p: float | None, n: int) -> str:
    if p is None or not n:
        return "—"
    lo, hi = wilson(p, n)
    return f"{lo:.3f}–{hi:.3f}"


def _table(model: str, versions: list[str], span: data.Span) -> pd.DataFrame:
    traffic = data.version_traffic(model, span).set_index("model_version")
    grid = {(r.model, r.version): r for r in data.grid(span).versions}
    quality = data.quality_by_version(model, span)
    offline = _offline(model, versions)
    agreement = _agreement(model, versions)
    rows: dict[str, dict[str, Any]] = {}
    for v in versions:
        t = traffic.loc[v] if v in traffic.index else None
        g = grid.get((model, v))
        requests = int(t.requests) if t is not None else 0
        errors = t.errors / requests if t is not None and requests else None
        column: dict[str, Any] = {
            "requests": requests,
            "p50 latency (ms)": t.p50_ms if t is not None else None,
            "p99 latency (ms)": t.p99_ms if t is not None else None,
            "error rate": errors, "error rate 95% CI": _interval(errors, requests),
            "drifted features": g.drift_share if g else None,
            "replay agreement": agreement.get(v),
        }
        mine = quality[quality.model_version == v]
        for q in mine.itertuples():
            column[q.metric] = q.value
            if q.metric in PROPORTIONS:
                column[f"{q.metric} 95% CI"] = _interval(q.value, int(q.sample_size))
        if not mine.empty:
            column["labels"] = int(mine.sample_size.max())
        column.update(offline.get(v, {}))
        for name, value in column.items():
            rows.setdefault(name, {})[f"v{v}"] = value
    return pd.DataFrame.from_dict(rows, orient="index")


def _best(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy where the better numeric value of each comparable row is marked with ✅."""
    marked = frame.astype(object).copy()
    for name, row in frame.iterrows():
        if str(name).startswith("param ") and row.astype(str).nunique() > 1:
            marked.loc[name] = [f"🔸 {v}" for v in row]  # params that differ, as MLflow marks
            continue
        values = pd.to_numeric(row, errors="coerce")
        if values.notna().sum() < 2 or name in ("requests", "labels", "training rows") \
                or str(name).startswith("param "):
            continue
        best = values.idxmin() if name in LOWER_IS_BETTER else values.idxmax()
        if values.nunique() > 1:
            marked.loc[name, best] = f"✅ {widgets.number(values[best], 4)}"
    for name, row in marked.iterrows():
        for col, value in row.items():
            if isinstance(value, str):
                continue
            if value is None or (isinstance(value, float) and math.isnan(value)):
                marked.loc[name, col] = "—"
            elif isinstance(value, float) and value.is_integer() and abs(value) >= 1000:
                marked.loc[name, col] = f"{int(value):,}"
            elif isinstance(value, float):
                marked.loc[name, col] = widgets.number(value, 4)
            else:
                marked.loc[name, col] = f"{value:,}" if isinstance(value, numbers.Integral) \
                    else str(value)
    return marked


def body() -> None:
    model = widgets.model()
    span = widgets.span()
    if model is None:
        st.info("No model yet.")
        return
    known = sorted(set(data.models(span).query("model == @model").model_version) - {""})
    if len(known) < 2:
        st.info(f"{model} has {len(known)} version(s) with data: comparing needs two. "
                "Deploy a challenger, or widen the time range.")
        return
    versions = st.multiselect("Versions", known, default=known[-2:], key="compare-versions")
    if len(versions) < 2:
        st.warning("Pick at least two versions.")
        return
    table = _table(model, versions, span)
    st.table(_best(table))  # a handful of rows: static, readable and selectable text
    st.caption(f"Live rows over the last {span.minutes} minutes, quality from the labels "
               "joined so far (95% Wilson intervals for shares); ✅ marks the better value, 🔸 "
               "a training parameter that differs. Offline rows and params are the training "
               "runs' own, from MLflow.")
    shares = data.prediction_histogram(model, tuple(versions), span)
    if shares.empty:
        st.caption("No predictions logged in this time range.")
    else:
        shares["version"] = "v" + shares.model_version
        figure = px.bar(shares, x="bin", y="share", color="version", barmode="overlay",
                        opacity=0.55, title="Prediction distribution")
        figure.update_layout(height=300, margin={"l": 0, "r": 0, "t": 30, "b": 0})
        st.plotly_chart(figure.update_yaxes(tickformat=".0%"), width="stretch")


def main() -> None:
    widgets.page_setup("Compare versions")
    widgets.refreshing(body)()


main()
