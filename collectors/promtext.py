"""What every scraping poller shares: HTTP GETs that fail as ``CollectorError``, and the
Prometheus text parser (``telemetry.promtext``, re-exported here)."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, datetime

import requests

from telemetry.boundary import classify
from telemetry.promtext import PromTextError, Sample, parse_samples

from .base import (
    COLLECTOR_ERRORS,
    CollectorAuthenticationError,
    CollectorError,
    CollectorUnavailableError,
)

__all__ = ["PromTextError", "Sample", "http_get", "parse_samples"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


def http_get(
    session: requests.Session,
    url: str,
    *,
    service: str,
    timeout_s: float,
    accept: Collection[int] = (),
) -> requests.Response:
    """GET ``url``; a refused connection, a timeout or an answer that is neither 2xx nor in
    ``accept`` is a ``CollectorError`` whose message names ``service`` and the URL."""
    try:
        response = session.get(url, timeout=timeout_s)
    except requests.Timeout as exc:
        raise CollectorUnavailableError(
            f"{service} at {url}: no answer within {timeout_s:g} s") from exc
    except requests.RequestException as exc:
        kind = classify(exc) or "failed"
        raise COLLECTOR_ERRORS[kind](f"{service} at {url}: {_reason(exc)}") from exc
    if not response.ok and response.status_code not in accept:
        body = response.text[:200].strip()
        refused = response.status_code in (401, 403)
        error = CollectorAuthenticationError if refused else CollectorError
        raise error(f"{service} at {url}: HTTP {response.status_code} {body}"
                    + (" (check the credentials; retrying will not help)" if refused else ""))
    return response


def _reason(exc: requests.RequestException) -> str:
    # requests nests the OS error several levels deep; its strerror is what a reader needs.
    found = _ERRNO.search(str(exc))
    if found:
        return found.group(1).strip().lower()
    return f"{type(exc).__name__}: {str(exc)[:200]}"

