"""Errors raised by the telemetry store.

    WatchloopError
    ├── UnavailableError           a service did not answer at its address: retry with backoff
    ├── AuthenticationError        a service refused the credentials: retrying will not help
    └── StoreError                 anything the store could not do
        ├── StoreLockedError       an embedded store directory is owned by another process
        ├── StoreUnavailableError  a ClickHouse server cannot be reached (an UnavailableError)
        ├── StoreAuthenticationError  the server refused the user (an AuthenticationError)
        ├── StoreNotFoundError     a store opened to be read (not created) does not exist
        └── MigrationError         a schema migration failed or was edited after it ran

Client-library exceptions are translated at the boundary (``telemetry.boundary``) with
``raise ... from exc``, so callers never import a client library to handle them.
"""

from __future__ import annotations


class WatchloopError(Exception):
    """Base of every error Watchloop raises on purpose."""


class UnavailableError(WatchloopError):
    """A service did not answer at its address (refused, timed out): try again later."""


class AuthenticationError(WatchloopError):
    """A service refused the credentials or the permission: fix the configuration."""


class StoreError(WatchloopError):
    """The store could not carry out a request."""


class StoreLockedError(StoreError):
    """An on-disk chDB directory is already open in another process."""


class StoreUnavailableError(StoreError, UnavailableError):
    """A ClickHouse server did not answer at its address."""


class StoreAuthenticationError(StoreError, AuthenticationError):
    """A ClickHouse server refused the user, the password or the permission."""


#: The store's error for each kind of client-library failure (``telemetry.boundary``).
STORE_ERRORS: dict[str, type[StoreError]] = {
    "unavailable": StoreUnavailableError, "auth": StoreAuthenticationError, "failed": StoreError,
}


class StoreNotFoundError(StoreError):
    """A store opened only to be read has no directory or no database yet."""


class MigrationError(StoreError):
    """A schema migration failed, or an applied one no longer matches its file."""
