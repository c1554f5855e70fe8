"""The demo's real servers and the Watchloop configuration that points at them.

``DemoStack`` starts a Kafka broker (Tansu), a private Redis, MLflow (sqlite) and a serving
backend (TorchServe, or Triton) on free loopback ports, each in its own process group, and
stops them by PID. ``demo_config`` is the ``watchloop.yaml`` a team would write for that
stack, at the demo's pace.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from watchloop.config import WatchloopConfig
from watchloop.services import (
    KafkaBroker,
    MlflowServer,
    RedisServer,
    ServiceProcess,
    TorchServeServer,
    TritonServer,
)

from .pace import Pace

MODEL = "fraud"
LOG_TOPIC = "demo.inference-logs"
LABEL_TOPIC = "demo.labels"
FEATURE_TOPIC = "demo.features"
DRIFT_RULE = "FeatureDrift"

Backend = Literal["torchserve", "triton"]


class DemoStack:
    """Kafka, Redis, MLflow and a model server, started together and stopped by PID."""

    def __init__(self, workdir: Path, backend: Backend,
                 progress: Callable[[str], None]) -> None:
        self.backend = backend
        self.kafka = KafkaBroker(workdir / "kafka")
        self.redis = RedisServer(workdir / "redis")
        self.mlflow = MlflowServer(workdir / "mlflow")
        self.server: TorchServeServer | TritonServer = (
            TorchServeServer(workdir / "torchserve") if backend == "torchserve"
            else TritonServer(workdir / "triton"))
        self.services: list[ServiceProcess] = [self.kafka, self.redis, self.mlflow, self.server]
        self._progress = progress

    def start(self, timeout: float = 180) -> None:
        """Start every server at once; on any failure stop them all and raise its error."""
        for service in self.services:
            self._progress(f"starting {service.name} on {service.address}")

        def start(service: ServiceProcess) -> None:
            service.start(timeout=timeout)
            self._progress(f"{service.name} ready in {service.start_seconds:.1f} s "
                           f"(pid {service.pid}, log {service.log_path})")

        try:
            with ThreadPoolExecutor(len(self.services)) as pool:
                futures = [pool.submit(start, service) for service in self.services]
                errors = [f.exception() for f in futures if f.exception() is not None]
            if errors:
                raise errors[0]
            self._create_topics()
        except BaseException:  # Ctrl-C while starting too: nothing is left running
            self.stop()
            raise

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()

    def pids(self) -> dict[str, int]:
        """Each server's process (and process group) id."""
        return {s.name: s.pid for s in self.services if s.pid is not None}

    def _create_topics(self) -> None:
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic

        admin = KafkaAdminClient(bootstrap_servers=self.kafka.bootstrap_servers)
        try:
            admin.create_topics([NewTopic(LOG_TOPIC, 3, 1), NewTopic(LABEL_TOPIC, 1, 1),
                                 NewTopic(FEATURE_TOPIC, 3, 1)])
        finally:
            admin.close()

    def serving_backend(self) -> dict[str, Any]:
        """The ``serving.backend`` section for the started server."""
        server = self.server
        if isinstance(server, TorchServeServer):
            return {"type": "torchserve", "inference_url": server.inference_url,
                    "management_url": server.management_url,
                    "metrics_url": server.metrics_url, "model_store": str(server.model_store),
                    "timeout_s": 30, "drain_s": 1.0}
        return {"type": "triton", "url": server.http_url, "metrics_url": server.metrics_url,
                "repository": str(server.model_repository), "timeout_s": 30}

    def metrics_poller(self) -> dict[str, Any]:
        """The ``collectors.pollers`` entry that scrapes the server's metrics."""
        server = self.server
        if isinstance(server, TorchServeServer):
            return {"type": "torchserve-metrics", "metrics_url": server.metrics_url,
                    "management_url": server.management_url, "interval_s": 5}
        return {"type": "triton-metrics", "metrics_url": server.metrics_url,
                "http_url": server.http_url, "interval_s": 5}


def demo_config(stack: DemoStack, pace: Pace, *, data_dir: Path, api_port: int,
                console_port: int, statsd_port: int, console: bool) -> WatchloopConfig:
    """The configuration of ``watchloop up`` over the demo's stack, at ``pace``."""
    bootstrap = stack.kafka.bootstrap_servers
    return WatchloopConfig.model_validate({
        "data_dir": str(data_dir),
        "store": {"type": "chdb", "path": str(data_dir / "store")},
        "api": {"port": api_port},
        "console": {"enabled": console, "port": console_port, "refresh": pace.console_refresh},
        "models": [{"name": MODEL, "owner": "trust-and-safety"}],
        "collectors": {
            "runner": {"batch_size": 500, "flush_interval_s": 0.5},
            "sources": [{"type": "kafka", "name": "payload-logs",
                         "bootstrap_servers": bootstrap, "group_id": "watchloop-collectors",
                         "log_topics": [LOG_TOPIC], "label_topics": [LABEL_TOPIC]}],
            "pollers": [stack.metrics_poller(),
                        {"type": "nvml", "interval_s": 15},
                        {"type": "kafka-lag", "bootstrap_servers": bootstrap,
                         "interval_s": 5, "window": 6}],
        },
        "monitors": {
            "interval": pace.monitor_interval,
            "drift": {"window": pace.drift_window, "min_rows": 100},
            "quality": {"window": pace.quality_window, "min_labels": 50},
            "latency": {"window": pace.drift_window},
            "slos": [{"name": "fraud-latency", "model": MODEL, "kind": "latency",
                      "objective": 0.99, "threshold_ms": 250},
                     {"name": "availability", "kind": "availability", "objective": 0.999}],
        },
        "alerts": {
            "redis_url": stack.redis.url,
            "prefix": "watchloop-demo",
            "rules": [{
                "name": DRIFT_RULE, "interval": "10s", "for": pace.alert_for,
                "severity": "page",
                "threshold": {"series": {"source": "drift", "metric": "__dataset__",
                                         "model": MODEL}, "op": ">", "value": 0.3},
                "annotations": {
                    "summary": "More than 30% of the fraud model's features drifted",
                    "description": "The retrain receiver retrains the model on the drifted "
                                   "traffic; see docs/feedback-policy.md"},
            }],
            "receivers": [{"type": "retrain", "name": "retrain"},
                          {"type": "datadog", "name": "datadog", "statsd_port": statsd_port}],
            "route": {"receivers": ["datadog"], "group_wait": "0s", "routes": [
                {"matchers": [f'alertname="{DRIFT_RULE}"'], "receivers": ["retrain", "datadog"],
                 "group_wait": "0s"}]},
        },
        "serving": {
            "backend": stack.serving_backend(),
            "verify": {"warmup_requests": 10, "latency_budget_ms": 1000},
            "analysis": {"enabled": False},
            "payload_log": {"type": "kafka", "url": f"kafka://{bootstrap}",
                            "target": LOG_TOPIC, "flush_ms": 100},
        },
        "feedback": {
            "redis_url": stack.redis.url,
            "prefix": "watchloop-demo",
            "mlflow": {"tracking_uri": stack.mlflow.tracking_uri, "experiment": "watchloop-demo"},
            "policy": {"cooldown": pace.cooldown, "daily_budget": 4, "lease": "2m",
                       "min_fresh_labels": pace.min_fresh_labels},
            "training": {"window": pace.train_window, "holdout": pace.holdout,
                         "timeout": "3m", "params": {"epochs": 15}},
            "gate": {"metric": "roc_auc", "min_rows": pace.gate_min_rows,
                     "min_absolute_improvement": 0.01},
            "watch": False,
            "alias_poll": "10s",
        },
    })
