"""The two kinds of collector, and the rows they produce.

A **record source** delivers inference logs and labels that must not be lost: the runner
polls it, stores a batch, and only then acknowledges the batch to the source (a Kafka commit,
a Redis XACK). A **metric poller** scrapes a system on an interval (serving metrics, GPU
metrics, Kafka lag) and returns rows for one table; a failed scrape is reported and retried
on the next tick.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from telemetry.errors import AuthenticationError, UnavailableError, WatchloopError

RecordKind = Literal["log", "label"]


@dataclass(frozen=True)
class SourceRecord:
    """One raw record as delivered, with what the source needs to acknowledge it."""

    kind: RecordKind
    payload: bytes | str | dict
    position: Any = None  # e.g. (topic, partition, offset) or a stream entry id
    error: str | None = None  # set when the transport already knows the record is unusable


@dataclass
class SourceBatch:
    """What one poll returned, and how far behind the source the collector is."""

    records: list[SourceRecord] = field(default_factory=list)
    lag: float | None = None  # records not yet read, when the source can tell


@runtime_checkable
class RecordSource(Protocol):
    """A source of inference logs and labels with at-least-once delivery."""

    name: str

    def poll(self, max_records: int, timeout_s: float) -> SourceBatch:
        """Return up to ``max_records`` new records, waiting at most ``timeout_s`` for any."""

    def acknowledge(self, records: Sequence[SourceRecord]) -> None:
        """Tell the source these records are stored and need not be delivered again."""

    def close(self) -> None:
        """Release connections; unacknowledged records will be delivered again later."""


@dataclass(frozen=True)
class MetricRows:
    """Rows for one store table, column-oriented (``{column: [values]}``)."""

    table: str
    columns: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))


@runtime_checkable
class MetricPoller(Protocol):
    """A system scraped on an interval."""

    name: str
    interval_s: float

    def collect(self) -> Sequence[MetricRows]:
        """Scrape once and return rows to store; raise ``CollectorError`` if the scrape failed."""

    def close(self) -> None:
        """Release connections."""


class CollectorError(WatchloopError):
    """A source or a scraped system could not be read; the message names it and its address."""


class CollectorUnavailableError(CollectorError, UnavailableError):
    """A source or a scraped system did not answer: retried with backoff."""


class CollectorAuthenticationError(CollectorError, AuthenticationError):
    """A source or a scraped system refused the credentials: retried only slowly."""


#: The collectors' error for each kind of client-library failure (``telemetry.boundary``).
COLLECTOR_ERRORS: dict[str, type[CollectorError]] = {
    "unavailable": CollectorUnavailableError, "auth": CollectorAuthenticationError,
    "failed": CollectorError,
}
