"""Translate client-library exceptions at the boundary, into the most specific error.

Watchloop talks to ClickHouse, Kafka, Redis and HTTP services through their client
libraries, each with its own exceptions. ``classify`` sorts any of them into one of three
kinds, and ``translated`` raises the caller's error class for that kind:

* ``unavailable``: the service did not answer (refused, timed out, no broker): retry later;
* ``auth``: it answered and refused the credentials or the permission: retrying will not
  help until someone fixes the configuration, and the message says so;
* ``failed``: it answered and refused the request (bad SQL, a missing topic).

Exceptions that come from no client library (a bug in Watchloop) are left alone.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from typing import Literal

from .errors import WatchloopError

Kind = Literal["unavailable", "auth", "failed"]

_CLIENT_MODULES = frozenset({
    "clickhouse_connect", "chdb", "redis", "kafka", "requests", "urllib3", "http", "socket",
    "ssl", "pynvml", "mlflow", "tritonclient", "datadog", "datadog_api_client",
})
# By class name, through the class's bases, so no optional library is imported here.
_AUTH = frozenset({
    "AuthenticationError", "AuthorizationError", "AuthenticationWrongNumberOfArgsError",
    "NoPermissionError", "SaslAuthenticationFailedError", "TopicAuthorizationFailedError",
    "GroupAuthorizationFailedError", "ClusterAuthorizationFailedError",
    "TransactionalIdAuthorizationFailedError", "DelegationTokenAuthorizationFailedError",
})
_UNAVAILABLE = frozenset({
    "OperationalError",  # clickhouse-connect: the server could not be reached
    "ConnectionError", "TimeoutError", "Timeout", "ConnectTimeout", "ReadTimeout",
    "NoBrokersAvailable", "KafkaConnectionError", "KafkaTimeoutError", "NodeNotReadyError",
    "RequestTimedOutError", "BusyLoadingError", "TryAgainError", "ClusterDownError",
})
# ClickHouse error codes for refused credentials: UNKNOWN_USER, WRONG_PASSWORD,
# REQUIRED_PASSWORD, IP_ADDRESS_NOT_ALLOWED, ACCESS_DENIED, AUTHENTICATION_FAILED.
_CLICKHOUSE_AUTH_CODES = frozenset({192, 193, 194, 195, 497, 516})
_CLICKHOUSE_CODE = re.compile(r"\bCode: (\d+)\b")


def classify(exc: BaseException) -> Kind | None:
    """The kind of a client-library exception; None for any other exception."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    module = type(exc).__module__.split(".")[0]
    if module not in _CLIENT_MODULES and not isinstance(exc, OSError):
        return None
    if names & _AUTH or _refused_credentials(exc):
        return "auth"
    if names & _UNAVAILABLE or isinstance(exc, (ConnectionError, TimeoutError)):
        return "unavailable"
    return "failed"


def _refused_credentials(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    if getattr(response, "status_code", None) in (401, 403):
        return True
    found = _CLICKHOUSE_CODE.search(str(exc))
    return bool(found) and int(found[1]) in _CLICKHOUSE_AUTH_CODES


def reason(exc: BaseException) -> str:
    """The useful part of an exception's text ("[Errno 111] Connection refused"), not a
    page of URL and stack: its first line, at most 300 characters."""
    text = str(exc) or type(exc).__name__
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    return errno[0] if errno else text.strip().splitlines()[0][:300]


def describe(kind: Kind, service: str, where: str, exc: BaseException) -> str:
    """A message that names the service, its address and what the kind means."""
    if kind == "unavailable":
        return f"cannot reach {service} at {where}: {reason(exc)}"
    if kind == "auth":
        return (f"{service} at {where} refused the credentials or the permission: "
                f"{reason(exc)} (check the user, password or ACL; retrying will not help)")
    return f"{service} at {where} refused the request: {reason(exc)}"


def translate(exc: BaseException, service: str, where: str,
              errors: Mapping[Kind, type[Exception]], action: str = "") -> Exception:
    """The caller's error for a client-library exception (its kind ``failed`` if it is not
    one a client library raised), to ``raise ... from exc`` after cleaning up."""
    kind = classify(exc) or "failed"
    message = describe(kind, service, where, exc)
    return errors[kind](f"{action}: {message}" if action else message)


@contextlib.contextmanager
def translated(service: str, where: str,
               errors: Mapping[Kind, type[Exception]]) -> Iterator[None]:
    """Raise ``errors[kind]`` (chained) for a client-library exception inside the block."""
    try:
        yield
    except WatchloopError:
        raise
    except Exception as exc:
        if classify(exc) is None:
            raise
        raise translate(exc, service, where, errors) from exc
