"""Point-in-time reads: see the store as it was at a moment.

Every fact table has an ``ingest_time``. ``PointInTime(t).source("labels")`` is a subquery
over only the rows ingested at or before ``t``; put it where a table name would go and pass
``.params`` with the query's other parameters::

    pit = PointInTime(cutoff)
    store.query(f"SELECT count() FROM {pit.source('labels')} WHERE label = {{l:String}}",
                {**pit.params, "l": "1"})

With ``t=None`` the source is the table as it is now. Inference logs are read ``FINAL`` so
that a redelivered record counts once even before ClickHouse merges its parts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .records import utc

_DEDUPLICATED = frozenset({"inference_logs"})
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
AS_OF_PARAM = "watchloop_as_of"


@dataclass(frozen=True)
class PointInTime:
    """A moment to read the store as of; ``None`` means now."""

    at: datetime | None = None

    def source(self, table: str) -> str:
        """A FROM-clause source over ``table`` restricted to rows ingested by ``at``."""
        if not _IDENTIFIER.match(table):
            raise ValueError(f"not a table name: {table!r}")
        final = " FINAL" if table in _DEDUPLICATED else ""
        if self.at is None:
            return f"(SELECT * FROM {table}{final})" if final else table
        return (
            f"(SELECT * FROM {table}{final} "
            f"WHERE ingest_time <= {{{AS_OF_PARAM}:DateTime64(3, 'UTC')}})"
        )

    @property
    def params(self) -> dict[str, Any]:
        """The bound parameters ``source`` refers to."""
        return {} if self.at is None else {AS_OF_PARAM: utc(self.at)}
