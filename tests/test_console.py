"""The console's pages, run headless by Streamlit's AppTest over a seeded store: the numbers
shown are the store's, the colours follow the rules that page, empty stores say what to do."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from alerts.backtest import backtest, radar
from dashboard import shared, widgets
from telemetry import Store, queries
from telemetry.clock import utc_now
from tests.console_seed import BIG_AMOUNTS, P99_RULE, Seeded, seed

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


@pytest.fixture
def seeded(console_store: Store) -> Iterator[Seeded]:
    made = seed(console_store)
    shared.use_settings(made.settings)
    yield made
    shared.use_settings(None)


def _page(page: str | None = None, **query: str) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=90)
    app.query_params.update(query)
    app.run()
    if page is not None:
        app.switch_page(f"views/{page}.py").run()
    assert not app.exception, [e.message for e in app.exception]
    return app


def _traffic(store: Store, minutes: int = 60) -> dict[str, dict]:
    end = utc_now() + timedelta(minutes=1)
    return {r["model_version"]: r for r in queries.traffic(store, end - timedelta(
        minutes=minutes + 1), end, model="fraud")}


def test_on_call_shows_every_version_with_the_stores_numbers_and_the_rules_colours(
        console_store, seeded):
    app = _page()
    grid = app.dataframe[0].value.set_index("version")
    assert sorted(grid.index) == ["1", "2"]  # a result with no version is no row of its own
    traffic = _traffic(console_store)
    for version in ("1", "2"):
        row, stored = grid.loc[version], traffic[version]
        assert row["p99 latency"].endswith(widgets.ms(stored["p99_ms"]))
        assert row["error rate"].endswith(widgets.pct(stored["errors"] / stored["requests"]))
        assert row["traffic"].endswith(f"{stored['requests'] / 60:,.1f}/min")
    # v2's p99 (~170 ms) breaches the paging rule (> 50 ms), and its alert is firing
    assert grid.loc["2", "p99 latency"].startswith("🔴")
    assert grid.loc["2", "status"] == "🔴" and "fraud-p99" in grid.loc["2", "why"]
    # its error rate (~8%) breaches the ticket rule (> 5%): amber, not red
    assert grid.loc["2", "error rate"].startswith("🟠")
    assert grid.loc["1", "p99 latency"].startswith("🟢")
    assert grid.loc["1", "error rate"].startswith("🟢")
    labels = console_store.scalar(
        "SELECT argMax(sample_size, ts) FROM monitor_results WHERE monitor = 'quality' "
        "AND model_version = '2' AND metric = 'roc_auc'")
    assert f"{labels:,} labels" in grid.loc["2", "quality"]
    assert "1 alert firing" in app.error[0].value and "fraud-p99" in app.error[0].value
    # firing first, then pending; each says why, since when, and where its runbook is
    cards = [m.value for m in app.markdown if m.value.startswith("#### ")]
    assert cards[0].startswith("#### 🔴 FIRING · fraud-p99")
    assert cards[1].startswith("#### 🟠 PENDING · fraud-errors")
    text = " ".join(m.value for m in app.markdown)
    assert "[Runbook](https://runbooks.example/fraud-p99)" in text
    assert re.search(r"since [78]m ago", text)  # it fired 7 minutes before the seed's now
    assert len(app.get("plotly_chart")) >= 1  # the firing rule's series and its threshold
    tiles = {m.label: m.value for m in app.metric}
    assert tiles["🔴 Pipeline lag"] == "500.0 s"  # the stalled partition, 5000 msgs / 10 per s


def test_an_empty_store_is_all_clear_and_each_page_says_what_to_configure(console_store):
    app = _page()
    assert "All clear" in app.success[0].value
    assert any("No model has traffic" in i.value for i in app.info)
    pipelines = _page("pipelines")
    infos = " ".join(i.value for i in pipelines.info)
    assert "kafka-lag" in infos and "configure `collectors:`" in infos
    assert any("No dead letters" in s.value for s in pipelines.success)
    model = _page("model")
    assert any("No model yet" in i.value for i in model.info)


def test_a_store_that_is_away_is_a_message_naming_it_never_a_traceback(
        console_store, monkeypatch):
    from watchloop.services.base import free_port

    shared.use_store(None)
    port = free_port()
    monkeypatch.setenv("WATCHLOOP_STORE_URL", f"http://127.0.0.1:{port}/watchloop")
    app = _page()
    assert any(f"127.0.0.1:{port}" in e.value for e in app.error), [e.value for e in app.error]


def test_a_store_lost_while_a_page_is_open_is_a_message_on_every_page(console_store, seeded):
    import streamlit as st

    app = _page()
    console_store.close()
    for page in ("oncall", "model", "pipelines", "alerts", "loop", "compare"):
        st.cache_data.clear()  # as each answer's few seconds in the cache lapse
        app.switch_page(f"views/{page}.py").run()
        assert not app.exception, (page, [e.message for e in app.exception])
        assert app.error, page
        assert any("closed" in e.value.lower() or "Store" in e.value for e in app.error), (
            page, [e.value for e in app.error])


def test_the_model_page_splits_traffic_by_version_and_shows_drift_and_quality(
        console_store, seeded):
    app = _page("model")
    table = app.dataframe[0].value.set_index("version")
    traffic = _traffic(console_store)
    for version in ("1", "2"):
        stored = traffic[version]
        assert table.loc[f"v{version}", "requests"] == f"{stored['requests']:,}"
        assert table.loc[f"v{version}", "p99"] == widgets.ms(stored["p99_ms"])
    newest = dict(console_store.query(
        "SELECT metric, argMax(value, ts) FROM monitor_results WHERE monitor = 'quality' "
        "AND model_version = '2' GROUP BY metric"))
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["roc_auc"] == widgets.number(newest["roc_auc"])
    assert metrics["accuracy"] == widgets.number(newest["accuracy"])
    # charts: latency, throughput, errors, the drift heatmap, a feature's distributions,
    # quality over time
    assert len(app.get("plotly_chart")) == 6
    assert any("Top drifting features now" in m.value and "amount" in m.value
               for m in app.markdown)
    # the seed's newest promotion: v2 on torchserve, by the loop
    assert any(m.value.startswith("Serving **v2** on **torchserve**") and "loop:retrain" in
               m.value for m in app.markdown)


def test_the_pipelines_page_shows_lag_status_dead_letters_and_freshness(
        console_store, seeded):
    app = _page("pipelines")
    lag = app.dataframe[0].value
    assert list(lag.status) == ["🔴 STALL"] and lag.loc[0, "lag (messages)"] == "5,000"
    assert "stuck at 100" in lag.loc[0, "reason"]
    assert any("STALL" in w.value for w in app.warning)
    dead = app.dataframe[1].value
    assert sum(int(r.replace(",", "")) for r in dead.records) == console_store.scalar(
        "SELECT count() FROM dead_letters")
    fresh = app.dataframe[-1].value.set_index("table")
    logs = console_store.scalar("SELECT count() FROM inference_logs")
    assert fresh.loc["inference_logs", "rows"] == f"{logs:,}"
    assert len(app.get("plotly_chart")) == 3  # lag in messages and seconds, dead letters


def test_the_alerts_page_lists_alerts_and_backtests_a_rule_as_the_cli_would(
        console_store, seeded):
    app = _page("alerts", alert=seeded.firing_fp)
    listed = app.dataframe[0].value.set_index("fingerprint")
    assert listed.loc[seeded.firing_fp, "state"] == "🔴 firing"
    assert listed.loc[seeded.pending_fp, "state"] == "🟠 pending"
    assert any(seeded.firing_fp in i.value and "firing" in i.value for i in app.info)
    app.selectbox(key="backtest-rule").set_value("fraud-p99")
    app.button(key="backtest-run").click().run()
    assert not app.exception, [e.message for e in app.exception]
    end = utc_now().replace(second=0, microsecond=0)
    expected = backtest(console_store, P99_RULE, end - timedelta(days=1), end)
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Firings"] == f"{len(expected.firings):,}"
    assert metrics["Pages per week"] == f"{expected.pages_per_week:.1f}"


def test_a_query_rules_backtest_shows_what_it_caught_against_the_labels(console_store, seeded):
    app = _page("alerts")
    app.selectbox(key="backtest-rule").set_value("big-amounts")
    app.button(key="backtest-run").click().run()
    assert not app.exception, [e.message for e in app.exception]
    end = utc_now().replace(second=0, microsecond=0)
    expected = radar(console_store, BIG_AMOUNTS.query, end - timedelta(days=1), end)
    assert expected.hit > 0  # v2's amounts are shifted: plenty of hits
    shown = app.table[0].value["count"]
    assert shown["requests hit"] == f"{expected.hit:,}"
    assert shown["caught (labelled positive)"] == f"{expected.caught:,}"
    assert shown["precision"] == widgets.pct(expected.precision, 1)


def test_the_feedback_loop_page_draws_the_lineage_from_alert_to_gate(console_store, seeded):
    app = _page("loop")
    summary = app.dataframe[0].value
    assert summary.loc[0, "version"] == "2" and summary.loc[0, "trigger id"] == "trig-1"
    assert summary.loc[0, "gate"] == "🟢 roc_auc 0.91 vs 0.88 on 800 rows"
    steps = app.dataframe[1].value
    assert [s for s in steps.step if s in ("alert", "trigger", "run", "register", "gate")] == [
        "alert", "trigger", "run", "register", "gate"]
    assert any("Actions need the Watchloop API" in i.value for i in app.info)


def test_compare_versions_puts_the_better_value_of_each_row_first(console_store, seeded):
    app = _page("compare")
    table = app.table[0].value
    traffic = _traffic(console_store)
    assert table.loc["p99 latency (ms)", "v1"] == f"✅ {widgets.number(traffic['1']['p99_ms'], 4)}"
    assert table.loc["p99 latency (ms)", "v2"] == widgets.number(traffic["2"]["p99_ms"], 4)
    assert table.loc["error rate", "v1"].startswith("✅")
    assert table.loc["replay agreement", "v2"] == "0.93"
    assert table.loc["offline roc_auc", "v2"] == "0.91"
    assert len(app.get("plotly_chart")) == 1  # predictions of both versions overlaid


def test_compare_reads_each_versions_training_run_from_mlflow_and_marks_differing_params(
        console_store, seeded, tmp_path):
    from feedback.registry import ModelRegistry
    from serving_adapters.reference_models import save_scorer

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = ModelRegistry(uri, artifact_location=(tmp_path / "artifacts").as_uri())
    scorer = save_scorer(tmp_path / "scorer.pt", 2)
    for version, lr, auc in (("1", 0.01, 0.88), ("2", 0.003, 0.91)):
        run = registry.start_run("fraud", f"run-{version}", {})
        registry.log_params(run, {"lr": lr, "epochs": 5})
        registry.log_metrics(run, {"roc_auc": auc})
        assert registry.register("fraud", run, scorer, ("amount", "hour"), {}) == version
    shared.use_settings(replace(seeded.settings, mlflow_uri=uri))
    table = _page("compare").table[0].value
    assert list(table.loc["param lr"]) == ["🔸 0.01", "🔸 0.003"]  # they differ
    assert list(table.loc["param epochs"]) == ["5", "5"]
    assert table.loc["offline roc_auc", "v2"] == "✅ 0.91"
    assert table.loc["offline roc_auc", "v1"] == "0.88"


def test_the_time_range_and_model_come_from_the_url_and_stay_in_it(console_store, seeded):
    app = _page(None, range="6h", model="fraud", refresh="off")
    pickers = {s.label: s.value for s in app.sidebar.selectbox}
    assert pickers == {"Time range": "6h", "Model": "fraud", "Refresh every": "off"}
    app.sidebar.selectbox[2].set_value("1m").run()
    assert app.query_params["refresh"] in ("1m", ["1m"])
    # another page draws the same choices, and the URL keeps them for a link
    app.switch_page("views/pipelines.py").run()
    pickers = {s.label: s.value for s in app.sidebar.selectbox}
    assert pickers == {"Time range": "6h", "Model": "fraud", "Refresh every": "1m"}
    assert app.query_params["range"] in ("6h", ["6h"])
    # an unknown value in a link falls back to the default instead of failing
    bad = _page(None, range="3y")
    assert {s.label: s.value for s in bad.sidebar.selectbox}["Time range"] == "1h"
