"""Rules exported for Prometheus: ``promtool check rules`` accepts them, and ``promtool test
rules`` shows them firing on the gauges Watchloop exports, as Watchloop's own rules do."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest
import yaml

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None,
                                reason="promtool is not installed (scripts/system-deps.sh)")

CONFIG = textwrap.dedent("""\
    alerts:
      rules:
        - name: fraud-p99
          for: 2m
          keep_firing_for: 5m
          severity: page
          labels: {team: fraud}
          annotations: {summary: "p99 over 50 ms", runbook_url: "https://runbooks/p99"}
          threshold:
            series: {monitor: latency, metric: latency_p99_ms, model: fraud}
            op: ">"
            value: 50
        - name: fraud-fast-burn
          burn_rate: {slo: availability, long: 1h, short: 5m, factor: 14.4, model: fraud}
        - name: drifted
          threshold: {series: {source: drift, metric: __dataset__}, op: ">=", value: 0.5}
        - name: card-velocity
          query: {model: fraud, where: "amount > 500", group_by: [card_id], value: 5}
""")

TESTS = textwrap.dedent("""\
    rule_files: [rules.yaml]
    evaluation_interval: 1m
    tests:
      - interval: 1m
        input_series:
          - series: 'watchloop_model_traffic{model="fraud",version="7",metric="latency_p99_ms"}'
            values: '20 80 80 80 80 20 20 20 20 20 20 20'
          - series: >-
              watchloop_slo_burn_rate{model="fraud", version="7", slo="availability",
              window="1h"}
            values: '20x10'
          - series: >-
              watchloop_slo_burn_rate{model="fraud", version="7", slo="availability",
              window="5m"}
            values: '1 1 30x8'
        alert_rule_test:
          - eval_time: 2m
            alertname: fraud-p99
            exp_alerts: []
          - eval_time: 3m
            alertname: fraud-p99
            exp_alerts:
              - exp_labels: {severity: page, team: fraud, model: fraud, version: "7",
                             metric: latency_p99_ms}
                exp_annotations: {summary: "p99 over 50 ms",
                                  runbook_url: "https://runbooks/p99"}
          - eval_time: 9m
            alertname: fraud-p99
            exp_alerts:
              - exp_labels: {severity: page, team: fraud, model: fraud, version: "7",
                             metric: latency_p99_ms}
                exp_annotations: {summary: "p99 over 50 ms",
                                  runbook_url: "https://runbooks/p99"}
          - eval_time: 11m
            alertname: fraud-p99
            exp_alerts: []
          - eval_time: 1m
            alertname: fraud-fast-burn
            exp_alerts: []
          - eval_time: 3m
            alertname: fraud-fast-burn
            exp_alerts:
              - exp_labels: {severity: page, model: fraud, version: "7", slo: availability,
                             window: 1h}
""")


def test_exported_rules_pass_promtool_check_and_test(tmp_path):
    (tmp_path / "watchloop.yaml").write_text(CONFIG)
    done = subprocess.run([sys.executable, "-m", "watchloop.cli", "rules", "export",
                           "--prometheus", "-o", str(tmp_path / "rules.yaml")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "left out card-velocity: a query rule reads raw inference logs" in done.stderr
    exported = yaml.safe_load((tmp_path / "rules.yaml").read_text())
    names = [r["alert"] for r in exported["groups"][0]["rules"]]
    assert names == ["fraud-p99", "fraud-fast-burn", "drifted"]
    check = subprocess.run(["promtool", "check", "rules", str(tmp_path / "rules.yaml")],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    (tmp_path / "tests.yaml").write_text(TESTS)
    test = subprocess.run(["promtool", "test", "rules", "tests.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert test.returncode == 0, test.stdout + test.stderr
