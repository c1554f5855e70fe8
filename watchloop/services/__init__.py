"""Start-up helpers for the real servers tests and the demo run: ClickHouse (chdb-core's
HTTP listener), Kafka (Tansu), Redis,
TorchServe, Triton, MLflow, PostgreSQL, Prometheus and Alertmanager.

Each server is a :class:`ServiceProcess`: ``start()`` runs it on free loopback ports in its
own process group and waits until it serves; ``stop()`` ends the whole group.
"""

from watchloop.services.base import (
    BinaryNotFound,
    ServiceProcess,
    ServiceStartError,
    free_port,
)
from watchloop.services.clickhouse import ClickHouseServer
from watchloop.services.kafka import KafkaBroker
from watchloop.services.mlflow import MlflowServer
from watchloop.services.postgres import PostgresServer
from watchloop.services.prometheus import (
    AlertmanagerServer,
    PrometheusServer,
    alertmanager_config,
    prometheus_config,
)
from watchloop.services.redis import RedisServer
from watchloop.services.torchserve import TorchServeServer
from watchloop.services.triton import TritonServer, write_doubling_model

__all__ = [
    "AlertmanagerServer",
    "BinaryNotFound",
    "ClickHouseServer",
    "KafkaBroker",
    "MlflowServer",
    "PostgresServer",
    "PrometheusServer",
    "RedisServer",
    "ServiceProcess",
    "ServiceStartError",
    "TorchServeServer",
    "TritonServer",
    "alertmanager_config",
    "free_port",
    "prometheus_config",
    "write_doubling_model",
]
