"""Fixtures shared by the test suite.

Real servers (ClickHouse, Kafka, Redis, TorchServe, Triton, MLflow, Prometheus, Alertmanager)
come from ``tests.plugins.services``. The store is chDB in memory (one engine per process, so
each test gets a database of its own inside it); the store, ingest, drift and monitor tests
run a second time against a real ClickHouse server (``SERVER_MODULES``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from telemetry import Migrator, Store, open_store
from telemetry.store import PASSWORD_ENV

pytest_plugins = ["tests.plugins.services"]


#: Test modules whose ``store`` tests also run against a ClickHouse server.
SERVER_MODULES = frozenset({
    "test_store", "test_ingest", "test_ingest_hostile", "test_rollup", "test_drift",
    "test_drift_profiles", "test_drift_runner", "test_quality", "test_slo",
    "test_result_evidence", "test_clock",
})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "store_backend" in metafunc.fixturenames and module in SERVER_MODULES:
        metafunc.parametrize("store_backend", ["embedded", "server"], indirect=True)


@pytest.fixture
def store_backend(request: pytest.FixtureRequest) -> str:
    """Which store a test's ``store`` is: embedded chDB, or a ClickHouse server."""
    return getattr(request, "param", "embedded")


@pytest.fixture
def store(store_backend: str, request: pytest.FixtureRequest,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A migrated, empty store in a database of its own."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    if store_backend == "server":
        server = request.getfixturevalue("clickhouse_server")
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        opened = open_store(server.url(database))
    else:
        opened = open_store(f"chdb://memory?database={database}")
    Migrator(opened).migrate()
    try:
        yield opened
    finally:
        if store_backend == "server":
            with open_store(opened.location.url) as cleaner:
                cleaner.command(f"DROP DATABASE IF EXISTS `{opened.database}`")
            opened.close()
        elif not opened.closed:
            opened.command(f"DROP DATABASE IF EXISTS `{opened.database}`")


@pytest.fixture
def console_store(store: Store) -> Iterator[Store]:
    """A fresh store that console pages in this process read (through ``dashboard.shared``)."""
    import streamlit as st

    from dashboard import shared

    # Query results are cached per process for a few seconds; each test has a fresh store.
    st.cache_data.clear()
    st.cache_resource.clear()
    shared.use_store(store)
    yield store
    shared.use_store(None)
