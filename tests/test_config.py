"""The config file: env expansion, secrets from the environment, errors with key and line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

from watchloop.config import ConfigError, WatchloopConfig, load_config, parse_config

BAD = textwrap.dedent("""\
    data_dir: /tmp/wl
    store:
      type: clickhouse
      url: ftp://ch
      pasword: ${CH_PASSWORD}
    api:
      port: 99999
      token: hunter2
    models:
      - name: fraud
        taks: regression
    console:
      port: ${NO_SUCH_VARIABLE}
""")


def _problems(text: str, env: dict | None = None) -> dict[str, tuple[int | None, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "watchloop.yaml", {"CH_PASSWORD": "pw"} if env is None else env)
    return {p.key: (p.line, p.message) for p in caught.value.problems}


def test_a_bad_config_names_every_key_its_line_and_what_was_expected():
    problems = _problems(BAD)
    assert problems["store.url"][0] == 4 and "https?://" in problems["store.url"][1]
    assert problems["store.pasword"] == (5, "unknown key; did you mean `password`?")
    assert problems["api.port"][0] == 7 and "less than or equal to 65535" in problems["api.port"][1]
    assert problems["api.token"] == (
        8, "secrets must come from the environment: write ${SOME_ENV_VAR}")
    assert problems["models[0].taks"] == (11, "unknown key; did you mean `task`?")
    assert problems["console.port"][0] == 13
    assert "NO_SUCH_VARIABLE is not set" in problems["console.port"][1]


def test_a_password_written_into_a_url_is_refused_but_an_env_reference_is_expanded():
    problems = _problems("collectors:\n  sources:\n    - type: redis-stream\n"
                         "      url: redis://:hunter2@cache:6379/0\n")
    assert problems["collectors.sources[0].url"][0] == 4
    assert "must come from the environment" in problems["collectors.sources[0].url"][1]
    config = parse_config("collectors:\n  sources:\n    - type: redis-stream\n"
                          "      url: redis://:${REDIS_PW}@cache:6379/0\n", "f",
                          {"REDIS_PW": "pw-9"})
    assert config.collectors.sources[0].url == "redis://:pw-9@cache:6379/0"


def test_an_unknown_backend_type_lists_the_known_ones():
    problems = _problems("store:\n  type: postgres\n")
    assert problems["store.type"][0] == 2
    assert "'chdb', 'chdb-memory', 'clickhouse'" in problems["store.type"][1]


def test_a_retrain_receiver_without_a_feedback_loop_is_a_config_problem_not_a_crash():
    text = ("alerts:\n  receivers:\n    - {name: dd, type: datadog}\n"
            "    - {name: r, type: retrain}\n  route: {receivers: [r]}\n")
    problems = _problems(text)
    assert problems["alerts.receivers[1].type"][0] == 4
    assert "add a feedback: section" in problems["alerts.receivers[1].type"][1]
    assert "alerts.receivers[0].type" not in problems


def test_environment_references_are_expanded_and_secrets_stay_hidden():
    config = parse_config(
        "store:\n  type: clickhouse\n  url: http://wl@${CH_HOST:-localhost}:8123/wl\n"
        "  password: ${CH_PASSWORD}\napi:\n  token: ${WL_TOKEN}\n",
        "f", {"CH_PASSWORD": "pw-123", "WL_TOKEN": "tok-456"},
    )
    assert config.store_url() == "http://wl@localhost:8123/wl"
    assert config.store_password() == "pw-123"
    assert config.api.token.get_secret_value() == "tok-456"
    assert "pw-123" not in repr(config) and "tok-456" not in repr(config)


def test_defaults_give_an_embedded_store_under_the_data_dir(tmp_path):
    config = parse_config(f"data_dir: {tmp_path}\n", "f", {})
    assert config.store_url() == f"chdb://{tmp_path}/store?database=watchloop"
    assert WatchloopConfig().known_models() is None


def test_invalid_yaml_and_a_missing_file_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"f:2: .*not valid YAML"):
        parse_config("a: 1\nb: [unclosed\n", "f", {})
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_config(tmp_path / "absent.yaml")


def test_config_check_prints_every_problem_and_exits_non_zero(tmp_path):
    path = tmp_path / "watchloop.yaml"
    path.write_text(BAD)
    bad = subprocess.run([sys.executable, "-m", "watchloop.cli", "config", "check", str(path)],
                         env={**os.environ, "CH_PASSWORD": "pw"},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert f"{path}:5: store.pasword: unknown key" in bad.stderr
    assert f"{path}: 6 problems" in bad.stderr
    path.write_text("store:\n  type: chdb-memory\nmodels:\n  - name: fraud\n")
    good = subprocess.run([sys.executable, "-m", "watchloop.cli", "config", "check", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stderr
    assert "OK (store chdb-memory, 1 models)" in good.stdout


# Every constraint a component checks, broken once, each on its own line. The constraints
# that span several keys are checked after the keys themselves, so these come in two files.
CONSTRAINTS = textwrap.dedent("""\
    collectors:
      sources:
        - type: kafka
          name: orders
          bootstrap_servers: kafka:9092
          label_topics: [orders]
          security_protocol: SASL_SSL
        - type: redis-stream
          name: labels
          log_stream: null
          label_stream: null
        - type: kafka
          bootstrap_servers: kafka:9092
          log_topics: [a]
          group_instance_id: ".."
          fetch_max_wait_ms: 40000
      pollers:
        - type: kafka-lag
          bootstrap_servers: kafka:9092
          groups_include: ["("]
          window: 1
    monitors:
      slos:
        - name: slow
          kind: latency
          objective: 0.99
        - name: up
          kind: availability
          objective: 0.999
          threshold_ms: 50
          burn_windows:
            - {long: 1h, short: 2h, factor: 14.4}
""")
NAMES = textwrap.dedent("""\
    collectors:
      sources:
        - type: kafka
          bootstrap_servers: kafka:9092
          log_topics: [logs]
      pollers:
        - type: nvml
          name: kafka
    monitors:
      slos:
        - {name: up, kind: availability, objective: 0.999}
        - {name: up, kind: availability, objective: 0.99}
""")
TOPICS = textwrap.dedent("""\
    collectors:
      sources:
        - type: kafka
          bootstrap_servers: kafka:9092
          log_topics: [logs]
          label_topics: [logs]
""")


def _check(tmp_path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "watchloop.yaml"
    path.write_text(text)
    return subprocess.run([sys.executable, "-m", "watchloop.cli", "config", "check", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)


@pytest.mark.parametrize("line, key, message", [
    (3, "collectors.sources[0].sasl_mechanism", "needs a sasl_mechanism"),
    (3, "collectors.sources[0].sasl_username", "SASL needs a user name"),
    (10, "collectors.sources[1].log_stream", "give log_stream and/or label_stream"),
    (15, "collectors.sources[2].group_instance_id", "cannot be '.' or '..'"),
    (16, "collectors.sources[2].fetch_max_wait_ms", "less than 30000"),
    (20, "collectors.pollers[0].groups_include", "invalid regular expression '('"),
    (21, "collectors.pollers[0].window", "greater than or equal to 2"),
    (24, "monitors.slos[0].threshold_ms", "a latency SLO needs threshold_ms"),
    (30, "monitors.slos[1].threshold_ms", "applies to latency SLOs only"),
    (32, "monitors.slos[1].burn_windows[0].short", "must be shorter than long"),
])
def test_config_check_reports_each_constraint_with_its_line(tmp_path, line, key, message):
    done = _check(tmp_path, CONSTRAINTS)
    assert done.returncode == 1
    assert any(text.startswith(f"{tmp_path / 'watchloop.yaml'}:{line}: {key}: ")
               and message in text for text in done.stderr.splitlines()), done.stderr


@pytest.mark.parametrize("text, line, key, message", [
    (TOPICS, 6, "collectors.sources[0].label_topics", "topic 'logs' is also in log_topics"),
    (NAMES, 8, "collectors.pollers[0].name",
     "'kafka' is already the name of collectors.sources[0]"),
    (NAMES, 12, "monitors.slos[1].name", "'up' is already the name of slos[0]"),
])
def test_config_check_reports_constraints_across_keys(tmp_path, text, line, key, message):
    done = _check(tmp_path, text)
    assert done.returncode == 1
    assert any(text.startswith(f"{tmp_path / 'watchloop.yaml'}:{line}: {key}: ")
               and message in text for text in done.stderr.splitlines()), done.stderr


def test_up_with_a_constraint_broken_exits_without_a_traceback_or_a_store(tmp_path):
    (tmp_path / "watchloop.yaml").write_text(
        "collectors:\n  sources:\n    - type: kafka\n      bootstrap_servers: k:9092\n")
    done = subprocess.run([sys.executable, "-m", "watchloop.cli", "up", "--no-console"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 1
    assert "watchloop.yaml:3: collectors.sources[0].log_topics: give log_topics" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / ".watchloop").exists()


def test_store_status_names_its_config_and_store_and_creates_nothing(tmp_path):
    done = subprocess.run([sys.executable, "-m", "watchloop.cli", "store", "status"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    store = (tmp_path / ".watchloop" / "store").resolve()
    assert "config   none (built-in defaults)" in done.stderr
    assert f"no store at chdb://{store}; `watchloop store migrate`" in done.stderr
    assert not (tmp_path / ".watchloop").exists()

    subprocess.run([sys.executable, "-m", "watchloop.cli", "store", "migrate"], check=True,
                   capture_output=True, timeout=120, cwd=tmp_path)
    done = subprocess.run([sys.executable, "-m", "watchloop.cli", "store", "status"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"store    chdb://{store}" in done.stderr and "0005_result_evidence" in done.stdout


def test_the_example_config_passes_config_check(tmp_path):
    from pathlib import Path

    example = Path(__file__).parent.parent / "watchloop.example.yaml"
    (tmp_path / "rules").mkdir()
    (tmp_path / "watchloop.yaml").write_text(example.read_text())
    names = set(re.findall(r"\$\{([A-Z_]+)\}", example.read_text()))
    done = subprocess.run([sys.executable, "-m", "watchloop.cli", "config", "check",
                           "watchloop.yaml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **dict.fromkeys(names, "x")})
    assert done.returncode == 0, done.stderr
