"""Pytest fixtures that start the real servers (see watchloop.services).

Load with ``pytest_plugins = ["tests.plugins.services"]``. A fixture skips only when its
server's binary cannot exist here (the reason says what to install); a server that is
installed but fails to start is an error, not a skip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

import pytest

from watchloop.services import (
    AlertmanagerServer,
    ClickHouseServer,
    KafkaBroker,
    MlflowServer,
    PostgresServer,
    PrometheusServer,
    RedisServer,
    ServiceProcess,
    TorchServeServer,
    TritonServer,
)

S = TypeVar("S", bound=ServiceProcess)

PrometheusFactory = Callable[..., PrometheusServer]
AlertmanagerFactory = Callable[..., AlertmanagerServer]


def _skip_unless_available(kind: type[ServiceProcess]) -> None:
    reason = kind.available()
    if reason is not None:
        pytest.skip(reason)


def _run(server: S, timeout: float) -> Iterator[S]:
    server.start(timeout=timeout)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """A Tansu broker (in-memory) shared by the session; use unique topic and group names."""
    _skip_unless_available(KafkaBroker)
    yield from _run(KafkaBroker(tmp_path_factory.mktemp("kafka")), timeout=30)


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    """A ClickHouse server (chdb-core's HTTP listener) shared by the session; each test uses a
    database of its own."""
    _skip_unless_available(ClickHouseServer)
    yield from _run(ClickHouseServer(tmp_path_factory.mktemp("clickhouse")), timeout=60)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server shared by the session; use unique keys."""
    _skip_unless_available(RedisServer)
    yield from _run(RedisServer(tmp_path_factory.mktemp("redis")), timeout=30)


@pytest.fixture(scope="session")
def torchserve_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TorchServeServer]:
    """TorchServe with an empty model store in its workdir, shared by the session."""
    _skip_unless_available(TorchServeServer)
    yield from _run(TorchServeServer(tmp_path_factory.mktemp("torchserve")), timeout=120)


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """Triton with an empty repository (explicit model control), shared by the session."""
    _skip_unless_available(TritonServer)
    yield from _run(TritonServer(tmp_path_factory.mktemp("triton")), timeout=60)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """An MLflow tracking server (sqlite, artifacts in its workdir), shared by the session."""
    _skip_unless_available(MlflowServer)
    yield from _run(MlflowServer(tmp_path_factory.mktemp("mlflow")), timeout=120)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A private PostgreSQL (initdb on a free port), shared by the session."""
    _skip_unless_available(PostgresServer)
    yield from _run(PostgresServer(tmp_path_factory.mktemp("postgres")), timeout=60)


@pytest.fixture(scope="session")
def mlflow_postgres_server(tmp_path_factory: pytest.TempPathFactory,
                           postgres_server: PostgresServer) -> Iterator[MlflowServer]:
    """An MLflow tracking server whose backend store is the session's PostgreSQL."""
    _skip_unless_available(MlflowServer)
    uri = postgres_server.create_database("mlflow")
    yield from _run(MlflowServer(tmp_path_factory.mktemp("mlflow-pg"), backend_store_uri=uri),
                    timeout=120)


@pytest.fixture
def prometheus_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PrometheusFactory]:
    """``make(config_yaml, rule_files=None, port=None)`` starts a Prometheus; all stop after."""
    _skip_unless_available(PrometheusServer)
    started: list[PrometheusServer] = []

    def make(
        config_yaml: str, rule_files: Mapping[str, str] | None = None, *, port: int | None = None
    ) -> PrometheusServer:
        server = PrometheusServer(
            tmp_path_factory.mktemp("prometheus"), config_yaml, rule_files, port=port
        )
        started.append(server)
        return server.start(timeout=30)

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def alertmanager_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AlertmanagerFactory]:
    """``make(config_yaml, port=None)`` starts an Alertmanager; all stop after the test."""
    _skip_unless_available(AlertmanagerServer)
    started: list[AlertmanagerServer] = []

    def make(config_yaml: str, *, port: int | None = None) -> AlertmanagerServer:
        server = AlertmanagerServer(tmp_path_factory.mktemp("alertmanager"), config_yaml, port=port)
        started.append(server)
        return server.start(timeout=30)

    try:
        yield make
    finally:
        for server in started:
            server.stop()
