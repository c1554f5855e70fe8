"""What a monitor result rests on: its status and the sample counts behind it.

Every drift, quality, traffic and SLO result is one of three statuses:

* ``ok``: computed from at least the monitor's minimum of rows or labels;
* ``insufficient_data``: the window held some data but fewer rows (``min_rows``) or labels
  (``min_labels``) than the minimum, so no score is given, only the counts;
* ``no_data``: the window held nothing; written all the same, so a console or an alert rule
  never mistakes the last old result for the current one.

``coverage`` is the share of a window that data covers, from its first event to its end: an
SLO's 3-day window evaluated on 8 minutes of data has a coverage of 0.002.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from telemetry.records import utc

Status = Literal["ok", "insufficient_data", "no_data"]
OK: Status = "ok"
INSUFFICIENT_DATA: Status = "insufficient_data"
NO_DATA: Status = "no_data"


def status_of(count: int, minimum: int) -> Status:
    """``no_data`` for nothing, ``insufficient_data`` below ``minimum``, else ``ok``."""
    if count <= 0:
        return NO_DATA
    return INSUFFICIENT_DATA if count < minimum else OK


def coverage(start: datetime, end: datetime, first: datetime | None) -> float:
    """The share of [start, end) from the first event seen in it to its end (0 without one)."""
    length = (utc(end) - utc(start)).total_seconds()
    if first is None or length <= 0:
        return 0.0
    covered = (utc(end) - max(utc(start), utc(first))).total_seconds()
    return min(1.0, max(0.0, covered / length))


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``, or None where it is undefined (0/0 and x/0)."""
    return numerator / denominator if denominator else None
