"""The config file: env expansion, secrets from the environment, errors with key and line."""

from __future__ import annotations

import os
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
    assert problems["store.pasword"] == (5, "unknown key (check its spelling)")
    assert problems["api.port"][0] == 7 and "less than or equal to 65535" in problems["api.port"][1]
    assert problems["api.token"] == (
        8, "secrets must come from the environment: write ${SOME_ENV_VAR}")
    assert problems["models[0].taks"] == (11, "unknown key (check its spelling)")
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
