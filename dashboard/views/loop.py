"""Feedback loop: each retraining as a lineage from the alert that caused it to the version it
produced and what became of it, with retrain, promote and roll back actions (confirmed,
recorded with who did them, behind the API's token when one is configured)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard import data, widgets
from dashboard.actions import ActionError

STEP_ICON = {"ok": "🟢", "passed": "🟢", "succeeded": "🟢", "accepted": "🟢", "promoted": "🟢",
             "firing": "🔴", "failed": "🔴", "refused": "🟠", "timed_out": "🔴",
             "crashed": "🔴", "started": "🔵", "moved": "🟠", "rolled_back": "🟠"}


def _gate(steps: list[dict[str, Any]]) -> str:
    gate = next((s for s in reversed(steps) if s["step"] == "gate"), None)
    if gate is None:
        return "—"
    d = gate["details"]
    return (f"{STEP_ICON.get(gate['status'], '')} {d.get('metric', '')} "
            f"{widgets.number(d.get('challenger'))} vs {widgets.number(d.get('champion'))} "
            f"on {d.get('rows', 0):,} rows")


def _lineage(model: str) -> None:
    retrainings = data.lineage(model)
    if not retrainings:
        st.info(f"No retraining of {model} yet: one starts from a retrain alert, a schedule, "
                "`watchloop retrain`, or the button below.")
        return
    summary = pd.DataFrame([{
        "started": r["steps"][0]["ts"], "trigger": r["steps"][0]["actor"],
        "version": r["version"] or "—", "gate": _gate(r["steps"]),
        "outcome": f"{STEP_ICON.get(r['outcome'].split(' ')[-1], '')} {r['outcome']}",
        "trigger id": r["trigger_id"]} for r in retrainings])
    st.dataframe(widgets.colour_cells(summary), hide_index=True, width="stretch")
    for r in retrainings[:10]:
        title = f"{r['trigger_id']} → v{r['version'] or '—'}: {r['outcome']}"
        with st.expander(title, expanded=r is retrainings[0]):
            st.markdown(" → ".join(f"{STEP_ICON.get(s['status'], '▫️')} **{s['step']}** "
                                   f"{s['status']}" for s in r["steps"]))
            st.dataframe(pd.DataFrame([{
                "when": s["ts"], "step": s["step"], "status": s["status"],
                "who": s["actor"], "why": s["reason"], "ref": s.get("ref", "")}
                for s in r["steps"]]), hide_index=True, width="stretch")


def _confirmed(label: str, key: str) -> bool:
    with st.popover(label):
        st.write(f"{label}: this changes production and is recorded with your name.")
        return st.button(f"Yes, {label.lower()}", key=key, type="primary")


def _actions(model: str) -> None:
    actions = widgets.actions()
    if actions is None:
        return
    reason = st.text_input("Reason (recorded)", key="loop-reason",
                           placeholder="e.g. drift after the holiday campaign")
    retrain, promote, rollback = st.columns(3)
    with retrain:
        force = st.checkbox("Past cooldown and budget", key="loop-force")
        if _confirmed("Retrain", "loop-retrain"):
            _run(lambda: actions.retrain(model, reason or "requested in the console", force),
                 f"Retraining of {model} queued as {actions.actor}")
    with promote:
        version = st.text_input("Version to promote", key="loop-version")
        if version and _confirmed("Promote", "loop-promote"):
            _run(lambda: actions.promote(model, version, reason or "promoted in the console"),
                 f"{model} v{version} promoted as {actions.actor}")
    with rollback:
        if _confirmed("Roll back", "loop-rollback"):
            _run(lambda: actions.rollback(model, reason or "rolled back in the console"),
                 f"{model} rolled back as {actions.actor}")


def _run(call: Any, done: str) -> None:
    try:
        with st.spinner("Asking the API…"):
            answer = call()
    except ActionError as exc:
        st.error(str(exc))
        return
    data.lineage.clear()
    data.deployments.clear()
    suffix = f": now serving v{answer['version']}" if isinstance(answer, dict) else ""
    widgets.report_done(done + suffix)


def body() -> None:
    model = widgets.model()
    if model is None:
        st.info("No model yet.")
        return
    st.subheader(f"Retrainings of {model}")
    _lineage(model)
    st.subheader("Deployments and rollbacks")
    deployments = data.deployments(model, 30)
    if deployments.empty:
        st.caption("No deployment recorded.")
    else:
        shown = deployments.drop(columns=["details", "model"])
        shown.insert(0, "", shown.status.map(lambda s: STEP_ICON.get(s, "▫️")))
        st.dataframe(shown, hide_index=True, width="stretch")


def main() -> None:
    widgets.page_setup("Feedback loop")
    widgets.refreshing(body)()
    model = widgets.model()
    if model is not None:
        st.subheader("Actions")
        widgets.guarded(lambda: _actions(model))()


main()
