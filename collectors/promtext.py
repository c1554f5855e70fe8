"""What every scraping poller shares: HTTP GETs that fail as ``CollectorError``, a parser for
the Prometheus text exposition format, and epoch milliseconds for the store.

The parser is our own rather than ``prometheus_client.parser``: that one renames a counter
``nv_inference_request_success`` to ``nv_inference_request_success_total``, and the store
keeps each exporter's metric names exactly as the exporter wrote them.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

import requests

from telemetry.boundary import classify

from .base import (
    COLLECTOR_ERRORS,
    CollectorAuthenticationError,
    CollectorError,
    CollectorUnavailableError,
)

__all__ = ["PromTextError", "Sample", "http_get", "parse_samples"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,?)')
_CLOSE = re.compile(r"\s*}")
_ESCAPE = re.compile(r'\\[\\"n]')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


@dataclass(frozen=True)
class Sample:
    """One line of a metrics page: the sample's name as written, its labels and value."""

    name: str
    labels: dict[str, str]
    value: float


class PromTextError(ValueError):
    """A page is not in the Prometheus text format; the message gives the line."""


def parse_samples(text: str) -> list[Sample]:
    """Parse Prometheus text exposition into samples; comments and timestamps are dropped.

    Accepts what real exporters write, including TorchServe's trailing comma in label sets
    (``{model_name="m",}``). Raises ``PromTextError`` naming the first line that is not a
    sample, so a wrong URL (an HTML page) is reported rather than read as no metrics.
    """
    samples: list[Sample] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name_match = _NAME.match(line)
        if name_match is None:
            raise PromTextError(f"line {number}: not a metric sample: {raw[:120]!r}")
        rest = line[name_match.end():]
        labels: dict[str, str] = {}
        if rest.startswith("{"):
            rest = _parse_labels(rest, labels, number, raw)
        fields = rest.split()
        if not fields or len(fields) > 2:
            raise PromTextError(f"line {number}: expected a value: {raw[:120]!r}")
        try:
            value = float(fields[0])
        except ValueError:
            raise PromTextError(f"line {number}: bad value {fields[0]!r}") from None
        samples.append(Sample(name_match.group(), labels, value))
    return samples


def _parse_labels(rest: str, labels: dict[str, str], number: int, raw: str) -> str:
    """Fill ``labels`` from ``{...}`` at the start of ``rest``; return what follows it."""
    position = 1
    while True:
        closing = _CLOSE.match(rest, position)
        if closing:
            return rest[closing.end():]
        match = _LABEL.match(rest, position)
        if match is None:
            raise PromTextError(f"line {number}: malformed labels: {raw[:120]!r}")
        labels[match.group(1)] = _ESCAPE.sub(lambda m: _ESCAPES[m.group()], match.group(2))
        position = match.end()
        if not match.group(3) and not _CLOSE.match(rest, position):
            raise PromTextError(f"line {number}: malformed labels: {raw[:120]!r}")


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

