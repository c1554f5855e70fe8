"""Errors raised by the serving adapters.

    WatchloopError
    └── ServingError                  a model server could not do what was asked
        ├── ServingUnavailableError   the server did not answer at its address (retry later)
        ├── ServingAuthenticationError the server refused the token
        ├── PackagingError            a version could not be packaged (archiver output inside)
        └── PredictionError           one request failed; carries the HTTP status
"""

from __future__ import annotations

from telemetry.errors import AuthenticationError, UnavailableError, WatchloopError

__all__ = [
    "SERVING_ERRORS",
    "PackagingError",
    "PredictionError",
    "ServingAuthenticationError",
    "ServingError",
    "ServingUnavailableError",
]


class ServingError(WatchloopError):
    """A model server refused or failed a request; the message names the server."""


class ServingUnavailableError(ServingError, UnavailableError):
    """A model server did not answer at its address."""


class ServingAuthenticationError(ServingError, AuthenticationError):
    """A model server refused the credentials."""


class PackagingError(ServingError):
    """A model version could not be packaged for its server."""


class PredictionError(ServingError):
    """A prediction request failed: ``status`` is the HTTP status (0 when none came back)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


#: The adapters' error for each kind of client-library failure (``telemetry.boundary``).
SERVING_ERRORS: dict[str, type[ServingError]] = {
    "unavailable": ServingUnavailableError, "auth": ServingAuthenticationError,
    "failed": ServingError,
}
