"""A parser for the Prometheus text exposition format, shared by the scraping pollers and
the serving adapters.

It is our own rather than ``prometheus_client.parser``: that one renames a counter
``nv_inference_request_success`` to ``nv_inference_request_success_total``, and Watchloop
keeps each exporter's metric names exactly as the exporter wrote them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PromTextError", "Sample", "parse_samples"]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,?)')
_CLOSE = re.compile(r"\s*}")
_ESCAPE = re.compile(r'\\[\\"n]')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


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
