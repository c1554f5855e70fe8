"""Prometheus and Alertmanager from the Debian packages, each with a config given as text."""

from __future__ import annotations

import shutil
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from watchloop.services.base import ServiceProcess, free_port, http_ready

__all__ = [
    "AlertmanagerServer",
    "PrometheusServer",
    "alertmanager_config",
    "prometheus_config",
]


def prometheus_config(
    targets: Sequence[str],
    *,
    job: str = "watchloop",
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    metrics_path: str = "/metrics",
    alertmanagers: Sequence[str] = (),
) -> str:
    """Config text that scrapes ``targets`` (``host:port``) and sends alerts to ``alertmanagers``.

    Rule files passed to :class:`PrometheusServer` are added to it on start.
    """
    import yaml

    config: dict[str, object] = {
        "global": {
            "scrape_interval": scrape_interval,
            "evaluation_interval": evaluation_interval,
        },
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": metrics_path,
                "static_configs": [{"targets": list(targets)}],
            }
        ],
    }
    if alertmanagers:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": list(alertmanagers)}]}]
        }
    return str(yaml.safe_dump(config, sort_keys=False))


def alertmanager_config(
    webhook_url: str | None = None,
    *,
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
) -> str:
    """Config text with one route, optionally posting every notification to ``webhook_url``."""
    import yaml

    receiver: dict[str, object] = {"name": "default"}
    if webhook_url:
        receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": True}]
    config = {
        "route": {
            "receiver": "default",
            "group_by": ["alertname"],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [receiver],
    }
    return str(yaml.safe_dump(config, sort_keys=False))


def _missing(binary: str, package: str) -> str | None:
    if shutil.which(binary) is None:
        return f"{binary} not found: apt-get install {package} (scripts/system-deps.sh)"
    return None


class PrometheusServer(ServiceProcess):
    """Prometheus with its TSDB in the workdir and the lifecycle API (``/-/reload``) on.

    ``rule_files`` maps file names to rule YAML; they are written to ``<workdir>/rules`` and
    appended to the config's ``rule_files``.
    """

    name = "prometheus"

    def __init__(
        self,
        workdir: Path,
        config_yaml: str,
        rule_files: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
    ) -> None:
        super().__init__(workdir)
        self.config_yaml = config_yaml
        self.rule_files = dict(rule_files or {})
        self.port = port or free_port(self.host)
        self.config_path = self.workdir / "prometheus.yml"
        self.rules_dir = self.workdir / "rules"

    @classmethod
    def available(cls) -> str | None:
        """None if the prometheus binary is on PATH, else how to install it."""
        return _missing("prometheus", "prometheus")

    @property
    def url(self) -> str:
        """Base URL of the HTTP API (``/api/v1/query``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        return self.url

    def prepare(self) -> None:
        import yaml

        config = yaml.safe_load(self.config_yaml) or {}
        if self.rule_files:
            self.rules_dir.mkdir(exist_ok=True)
            listed = list(config.get("rule_files") or [])
            for file_name, text in self.rule_files.items():
                path = self.rules_dir / file_name
                path.write_text(text)
                listed.append(str(path))
            config["rule_files"] = listed
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def command(self) -> list[str]:
        return [
            str(shutil.which("prometheus")),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]

    def is_ready(self) -> bool:
        return http_ready(f"{self.url}/-/ready")

    def reload(
        self, config_yaml: str | None = None, rule_files: Mapping[str, str] | None = None
    ) -> None:
        """Rewrite the config and rule files (where given) and ask Prometheus to reload them."""
        if config_yaml is not None:
            self.config_yaml = config_yaml
        if rule_files is not None:
            self.rule_files = dict(rule_files)
        self.prepare()
        _post(f"{self.url}/-/reload")


class AlertmanagerServer(ServiceProcess):
    """Alertmanager with clustering off and its state in the workdir."""

    name = "alertmanager"

    def __init__(self, workdir: Path, config_yaml: str, *, port: int | None = None) -> None:
        super().__init__(workdir)
        self.config_yaml = config_yaml
        self.port = port or free_port(self.host)
        self.config_path = self.workdir / "alertmanager.yml"

    @classmethod
    def available(cls) -> str | None:
        """None if the prometheus-alertmanager binary is on PATH, else how to install it."""
        return _missing("prometheus-alertmanager", "prometheus-alertmanager")

    @property
    def url(self) -> str:
        """Base URL of the HTTP API (``/api/v2/alerts``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        return self.url

    def prepare(self) -> None:
        self.config_path.write_text(self.config_yaml)

    def command(self) -> list[str]:
        return [
            str(shutil.which("prometheus-alertmanager")),
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]

    def is_ready(self) -> bool:
        return http_ready(f"{self.url}/-/ready")

    def reload(self, config_yaml: str | None = None) -> None:
        """Rewrite the config (where given) and ask Alertmanager to reload it."""
        if config_yaml is not None:
            self.config_yaml = config_yaml
        self.prepare()
        _post(f"{self.url}/-/reload")


def _post(url: str) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(urllib.request.Request(url, data=b"", method="POST"), timeout=10):
        pass
