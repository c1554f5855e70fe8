"""Errors raised by the telemetry store.

    WatchloopError
    └── StoreError                 anything the store could not do
        ├── StoreLockedError       an embedded store directory is owned by another process
        ├── StoreUnavailableError  a ClickHouse server cannot be reached
        ├── StoreNotFoundError     a store opened to be read (not created) does not exist
        └── MigrationError         a schema migration failed or was edited after it ran

Client-library exceptions are translated at the store boundary with ``raise ... from exc`` so
callers never need to import clickhouse-connect or chDB to handle them.
"""

from __future__ import annotations


class WatchloopError(Exception):
    """Base of every error Watchloop raises on purpose."""


class StoreError(WatchloopError):
    """The store could not carry out a request."""


class StoreLockedError(StoreError):
    """An on-disk chDB directory is already open in another process."""


class StoreUnavailableError(StoreError):
    """A ClickHouse server did not answer at its address."""


class StoreNotFoundError(StoreError):
    """A store opened only to be read has no directory or no database yet."""


class MigrationError(StoreError):
    """A schema migration failed, or an applied one no longer matches its file."""
