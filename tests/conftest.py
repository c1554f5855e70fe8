"""Fixtures shared by the test suite.

Real servers (Kafka, Redis, TorchServe, Triton, MLflow, Prometheus, Alertmanager) come from
``tests.plugins.services``. The store is chDB in memory: one engine per process, so each test
gets a database of its own inside it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from telemetry import Migrator, Store, open_store

pytest_plugins = ["tests.plugins.services"]


@pytest.fixture
def store() -> Iterator[Store]:
    """A migrated, empty store in a database of its own."""
    opened = open_store(f"chdb://memory?database=t_{uuid.uuid4().hex[:12]}")
    Migrator(opened).migrate()
    try:
        yield opened
    finally:
        if not opened.closed:
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
