"""The ``watchloop.yaml`` file: read, expand ``${ENV}``, validate, report every problem.

Components never read this file: ``watchloop.wiring`` builds them from the validated model.
Each backend section picks its implementation with ``type:``; unknown keys are errors, so a
typo is reported with its key path and line instead of being silently ignored. Secrets
(tokens, passwords, API keys) must be written as ``${ENV_VAR}`` references.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from alerts.rules import Rule
from alerts.settings import AlertsSettings
from collectors.dcgm import DcgmExporterSettings
from collectors.kafka_lag import KafkaLagSettings
from collectors.kafka_source import KafkaSourceSettings
from collectors.nvml import NvmlSettings
from collectors.redis_source import RedisStreamSettings
from collectors.runner import RunnerSettings
from collectors.serving_metrics import TorchServeMetricsSettings, TritonMetricsSettings
from drift.settings import Duration, MonitorSettings
from feedback import retrain_failed_rule
from feedback.settings import FeedbackSettings
from serving_adapters.settings import ServingSettings
from telemetry.errors import WatchloopError
from telemetry.problems import raise_at, repeated_names
from telemetry.records import MAX_FUTURE_SKEW

DEFAULT_CONFIG_FILE = "watchloop.yaml"
CONFIG_ENV = "WATCHLOOP_CONFIG"
SECRET_KEYS = frozenset({"token", "password", "api_key", "app_key", "secret"})
_URL_PASSWORD = re.compile(r"://[^/@:\s]*:([^/@\s]+)@")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChdbStoreSettings(Settings):
    """Embedded ClickHouse on disk; the default."""

    type: Literal["chdb"] = "chdb"
    path: Path = Path("store")  # relative paths are under data_dir
    database: str = "watchloop"


class MemoryStoreSettings(Settings):
    """Embedded ClickHouse in memory: nothing survives the process (tests, trials)."""

    type: Literal["chdb-memory"]
    database: str = "watchloop"


class ClickHouseStoreSettings(Settings):
    """A ClickHouse server, shared by many Watchloop processes."""

    type: Literal["clickhouse"]
    url: Annotated[str, Field(pattern=r"^https?://", examples=["http://watchloop@ch:8123/watchloop"])]
    password: SecretStr | None = None


StoreSettings = Annotated[
    ChdbStoreSettings | MemoryStoreSettings | ClickHouseStoreSettings,
    Field(discriminator="type"),
]


class ApiSettings(Settings):
    """The HTTP API: ingest, health, readiness and /metrics."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8765
    token: SecretStr | None = None  # bearer token required on ingest and actions, if set
    max_body_bytes: Annotated[int, Field(gt=0)] = 16 * 1024 * 1024
    max_record_bytes: Annotated[int, Field(gt=0)] = 64 * 1024


class IngestSettings(Settings):
    """Rules every source of inference logs and labels is held to (telemetry/records.py)."""

    # How far ahead of the ingest time an event may be: clock skew between hosts. Later
    # records are dead-lettered with the reason (they would stretch every chart to the future).
    max_future_skew: Duration = MAX_FUTURE_SKEW
    # How often the per-minute rollup is checked against the logs and repaired where a crash
    # or two racing writers made it differ (telemetry/rollup.py).
    rollup_check_interval: Duration = timedelta(seconds=30)


class ConsoleSettings(Settings):
    """The Streamlit console, served from the same process as the store."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8501
    # how often pages refresh themselves (each viewer can change it in the sidebar)
    refresh: Literal["off", "10s", "30s", "1m", "5m"] = "30s"


class ModelSettings(Settings):
    """A model Watchloop watches. Records for unlisted models are dead-lettered when any are
    listed."""

    name: Annotated[str, Field(min_length=1)]
    task: Literal["classification", "regression"] = "classification"
    owner: str = ""


SourceSettings = Annotated[
    KafkaSourceSettings | RedisStreamSettings, Field(discriminator="type")
]

PollerSettings = Annotated[
    TorchServeMetricsSettings
    | TritonMetricsSettings
    | NvmlSettings
    | DcgmExporterSettings
    | KafkaLagSettings,
    Field(discriminator="type"),
]


class CollectorsSettings(Settings):
    """Where inference logs and labels come from, and what is scraped."""

    runner: RunnerSettings = Field(default_factory=RunnerSettings)
    sources: list[SourceSettings] = Field(default_factory=list)
    pollers: list[PollerSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> CollectorsSettings:
        """Collector names key their health rows and metrics: each must be unique."""
        entries = [((section, i, "name" if "name" in type(entry).model_fields else "cluster"),
                    entry.collector_name)
                   for section in ("sources", "pollers")
                   for i, entry in enumerate(getattr(self, section))]
        raise_at("CollectorsSettings", repeated_names(
            entries, within="collectors.", hint="; give each collector a name of its own"))
        return self


class WatchloopConfig(Settings):
    """The whole configuration file."""

    data_dir: Path = Path(".watchloop")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    store: StoreSettings = Field(default_factory=ChdbStoreSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    models: list[ModelSettings] = Field(default_factory=list)
    collectors: CollectorsSettings = Field(default_factory=CollectorsSettings)
    # Drift, quality, latency and SLO monitors; off unless the section is present.
    monitors: MonitorSettings | None = None
    # Alert rules, their evaluation and delivery; off unless the section is present.
    alerts: AlertsSettings | None = None
    # The model server Watchloop deploys to (watchloop serve); off unless present.
    serving: ServingSettings | None = None
    # Retraining, the MLflow registry, the gate and promotion; off unless present.
    feedback: FeedbackSettings | None = None

    @model_validator(mode="after")
    def _retrain_needs_feedback(self) -> WatchloopConfig:
        """A ``retrain`` receiver hands alerts to the feedback loop: there must be one."""
        receivers = self.alerts.receivers if self.alerts is not None else ()
        raise_at("WatchloopConfig", [
            (("alerts", "receivers", i, "type"), "a retrain receiver needs the feedback loop: "
             "add a feedback: section (or use another receiver type)", r.type)
            for i, r in enumerate(receivers) if r.type == "retrain" and self.feedback is None])
        return self

    def store_url(self) -> str:
        """The store URL these settings select."""
        store = self.store
        if isinstance(store, ChdbStoreSettings):
            path = store.path if store.path.is_absolute() else self.data_dir / store.path
            return f"chdb://{path.resolve()}?database={store.database}"
        if isinstance(store, MemoryStoreSettings):
            return f"chdb://memory?database={store.database}"
        return store.url

    def store_password(self) -> str | None:
        """The ClickHouse server password, if one is configured (from the environment)."""
        store = self.store
        if isinstance(store, ClickHouseStoreSettings) and store.password is not None:
            return store.password.get_secret_value()
        return None

    def alert_rules(self) -> tuple[Rule, ...]:
        """The alert rules: the configured ones, a burn-rate rule per burn window of each
        monitored SLO (``alerts.burn.slo_rules``) and, with a feedback loop, ``RetrainFailed``
        (``feedback.retrain_failed_rule``), each unless one of that name is configured."""
        if self.alerts is None:
            return ()
        from alerts.burn import slo_rules

        named = {r.name for r in self.alerts.rules}
        generated = slo_rules(self.monitors.slos) if self.monitors is not None else []
        if self.feedback is not None:
            generated.append(retrain_failed_rule())
        return (*self.alerts.rules, *(r for r in generated if r.name not in named))

    def known_models(self) -> set[str] | None:
        """Names of the configured models, or None to accept any model."""
        return {m.name for m in self.models} or None


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file."""

    key: str
    message: str
    line: int | None = None

    def format(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        return f"{where}: {self.key or '(top level)'}: {self.message}"


class ConfigError(WatchloopError):
    """A config file is unreadable or invalid; ``problems`` lists every issue found."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(p.format(source) for p in problems))


def find_config_file(explicit: str | Path | None = None) -> Path | None:
    """The file to read: the one given, else $WATCHLOOP_CONFIG, else ./watchloop.yaml if any."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.exists() else None


def load_config(path: str | Path | None, env: dict[str, str] | None = None) -> WatchloopConfig:
    """Read and validate a config file (None gives the defaults); raise ``ConfigError``."""
    if path is None:
        return WatchloopConfig()
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        problem = ConfigProblem("", f"cannot read the file: {exc.strerror}")
        raise ConfigError(source, [problem]) from None
    env = os.environ if env is None else env
    config = parse_config(text, source, env)
    if config.alerts is not None and config.alerts.rules_dir is not None:
        directory = config.alerts.rules_dir
        if not directory.is_absolute():
            directory = Path(path).parent / directory
        rules = [*config.alerts.rules, *load_rules_dir(directory, env)]
        names = [r.name for r in rules]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(str(directory), [ConfigProblem(
                "rules", f"rule names must be unique across {source} and the rules "
                f"directory; repeated: {', '.join(repeated)}")])
        alerts = config.alerts.model_copy(update={"rules": tuple(rules)})
        config = config.model_copy(update={"alerts": alerts})
    return config


def parse_config(text: str, source: str, env: dict[str, str] | os._Environ) -> WatchloopConfig:
    """Validate config text; every problem is collected before ``ConfigError`` is raised."""
    config = _parse_document(text, source, env, WatchloopConfig)
    assert isinstance(config, WatchloopConfig)
    return config


class RuleFile(Settings):
    """A file of ``rules/``: ``{rules: [...]}``, or the list of rules itself."""

    rules: tuple[Rule, ...] = ()


def load_rules_dir(directory: Path, env: dict[str, str] | os._Environ) -> list[Rule]:
    """Every rule in ``directory/*.yaml`` (and ``*.yml``), in file name order; problems are
    reported with their file and line."""
    if not directory.is_dir():
        raise ConfigError(str(directory), [ConfigProblem("", "the rules directory does not "
                                                         "exist (alerts.rules_dir)")])
    rules: list[Rule] = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        text = path.read_text(encoding="utf-8")
        parsed = _parse_document(text, str(path), env, RuleFile)
        assert isinstance(parsed, RuleFile)
        rules.extend(parsed.rules)
    return rules


def _parse_document(text: str, source: str, env: Any, model: type[Settings]) -> Settings:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
        what = " ".join(p for p in parts if p)
        problem = ConfigProblem("", f"not valid YAML: {what or exc}", line)
        raise ConfigError(source, [problem]) from None
    lines = _line_index(root)
    if raw is None:
        raw = {}
    if model is RuleFile and isinstance(raw, list):  # a file that is the list of rules
        raw = {"rules": raw}
        lines = {("rules", *path): line for path, line in lines.items()}
    if not isinstance(raw, dict):
        raise ConfigError(source, [ConfigProblem("", "expected a mapping of settings", 1)])
    problems: list[ConfigProblem] = []
    expanded = _expand(raw, (), env, lines, problems)
    flagged = {p.key for p in problems}
    try:
        config = model.model_validate(expanded)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            path = _data_path(expanded, err["loc"])
            if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                path = (*path, "type")
            if _key(path) not in flagged:
                problems.append(ConfigProblem(_key(path), _explain(err, expanded, path, model),
                                              _nearest_line(lines, path)))
    if problems:
        raise ConfigError(source, sorted(problems, key=lambda p: p.line or 0))
    return config


def _expand(value: Any, path: tuple, env: Any, lines: dict, problems: list) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}``; insist secrets are environment references."""
    if isinstance(value, dict):
        return {k: _expand(v, (*path, k), env, lines, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*path, i), env, lines, problems) for i, v in enumerate(value)]
    is_secret = bool(path) and path[-1] in SECRET_KEYS and value is not None
    if is_secret and not (isinstance(value, str) and _ENV_REF.fullmatch(value.strip())):
        problems.append(ConfigProblem(
            _key(path), "secrets must come from the environment: write ${SOME_ENV_VAR}",
            _nearest_line(lines, path)))
        return None
    if not isinstance(value, str):
        return value
    password = _URL_PASSWORD.search(value)
    if password and not _ENV_REF.fullmatch(password[1]):
        problems.append(ConfigProblem(
            _key(path), "a password in a URL must come from the environment: write "
            "scheme://user:${SOME_ENV_VAR}@host", _nearest_line(lines, path)))
        return _URL_PASSWORD.sub("://***@", value)

    def substitute(match: re.Match) -> str:
        name, default = match[1], match[2]
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(ConfigProblem(
            _key(path), f"environment variable {name} is not set (write ${{{name}:-default}} "
            "to give a default)", _nearest_line(lines, path)))
        return ""

    return _ENV_REF.sub(substitute, value)


def _explain(err: dict, data: Any, path: tuple, model: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        known = _known_keys(model, data, path[:-1])
        close = difflib.get_close_matches(str(path[-1]), known, n=1, cutoff=0.6)
        if close:
            return f"unknown key; did you mean `{close[0]}`?"
        if known:
            return f"unknown key; expected one of: {', '.join(sorted(known))}"
        return "unknown key (check its spelling)"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        return f"unknown type {err['ctx']['tag']!r}; expected one of {err['ctx']['expected_tags']}"
    if kind == "union_tag_not_found":
        return f"a 'type:' key is required; expected one of {err['ctx'].get('discriminator', '')}"
    if kind == "settings_problem":
        return err["msg"]
    if kind == "value_error":
        return err["msg"].removeprefix("Value error, ")
    return f"{err['msg']} (got {err['input']!r})"


def _known_keys(model: Any, data: Any, path: tuple) -> list[str]:
    """The keys the settings model at ``path`` accepts ([] where it cannot be told)."""
    annotation, node = model, data
    for part in path:
        annotation = _strip(annotation)
        origin = typing.get_origin(annotation)
        if origin in (list, tuple):
            annotation = typing.get_args(annotation)[0]
            node = node[part] if isinstance(node, list) and isinstance(part, int) and \
                part < len(node) else None
            continue
        if origin is dict:
            annotation = typing.get_args(annotation)[1]
        else:
            found = _model_of(annotation, node)
            field = found.model_fields.get(part) if found is not None else None
            if field is None:
                return []
            annotation = field.annotation
        node = node.get(part) if isinstance(node, dict) else None
    found = _model_of(_strip(annotation), node)
    return list(found.model_fields) if found is not None else []


def _strip(annotation: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` as ``X``."""
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
            annotation = args[0]
            continue
        return annotation


def _model_of(annotation: Any, node: Any) -> type[BaseModel] | None:
    """The settings model an annotation means for ``node``; a union of models is told apart
    by the ``type`` literal of each."""
    annotation = _strip(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return None
    models = [m for m in (_model_of(a, node) for a in typing.get_args(annotation)) if m]
    for candidate in models:
        tag = candidate.model_fields.get("type")
        if isinstance(node, dict) and tag is not None and \
                node.get("type") in typing.get_args(tag.annotation):
            return candidate
    return models[0] if len(models) == 1 else None


def _data_path(data: Any, loc: tuple) -> tuple:
    """Drop the union tags pydantic inserts into an error location (e.g. 'clickhouse')."""
    path: list = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part not in node and node.get("type") == part:
            continue
        path.append(part)
        node = node.get(part) if isinstance(node, dict) else (
            node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node)
            else None)
    return tuple(path)


def _key(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_index(node: Any, path: tuple = (), index: dict | None = None) -> dict:
    """Map each key path of a composed YAML document to its 1-based line."""
    index = {} if index is None else index
    if node is None:
        return index
    index[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*path, key_node.value)
            index[child] = key_node.start_mark.line + 1
            _line_index(value_node, child, index)
            index[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*path, i), index)
    return index


def _nearest_line(lines: dict, path: tuple) -> int | None:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None
