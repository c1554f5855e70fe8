"""The one clock and the one epoch conversion every part of Watchloop uses.

Components take a ``clock`` (``Clock``: no arguments, an aware UTC ``datetime``) and default
to ``utc_now``; tests and backtests pass a fixed or shifted one. Queries never read the
server's ``now()``: the moment is taken here and bound as a parameter, so a ClickHouse server
whose clock is off does not move any window.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime (a naive one is taken to be UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def utc_now() -> datetime:
    """Now, in UTC, to the millisecond (the store's precision)."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the Unix epoch, exactly (no float rounding)."""
    return (utc(moment) - _EPOCH) // _MS


def from_epoch_ms(ms: int) -> datetime:
    """The aware UTC datetime of a count of milliseconds since the Unix epoch."""
    return _EPOCH + ms * _MS
