"""Exactly-once claims among processes sharing one store, with nothing but the store.

ClickHouse has no locks or compare-and-set, but ``CREATE TABLE`` without ``IF NOT EXISTS`` is
atomic: of several processes creating the same table, one succeeds and the others are told it
exists. A marker table is therefore a claim: the migration lock is one, and so is each tick of
a periodic job that must run once per tick however many processes run it (the monitors).
"""

from __future__ import annotations

import re

from .errors import StoreError
from .store import Store

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def create_marker(store: Store, name: str) -> bool:
    """Create the marker table ``name``: True for the one process that did, False when it
    already existed. Other store errors are raised."""
    if not _NAME.match(name):
        raise ValueError(f"not a table name: {name!r}")
    try:
        store.command(f"CREATE TABLE `{name}` (claimed UInt8) ENGINE = Memory")
    except StoreError as exc:
        if "TABLE_ALREADY_EXISTS" in str(exc) or "already exists" in str(exc):
            return False
        raise
    return True


class TickClaims:
    """Which process runs tick ``n`` of a periodic job: the first to claim it.

    Markers of ticks older than ``keep`` are dropped by whoever claims a newer one.
    """

    def __init__(self, store: Store, job: str, *, keep: int = 10) -> None:
        if not _NAME.match(job):
            raise ValueError(f"job names are identifiers, not {job!r}")
        self._store = store
        self._prefix = f"_watchloop_tick_{job}_"
        self._keep = keep

    def claim(self, tick: int) -> bool:
        """True when this process claimed ``tick`` and should run it."""
        claimed = create_marker(self._store, f"{self._prefix}{tick}")
        if claimed:
            self._drop_before(tick - self._keep)
        return claimed

    def _drop_before(self, tick: int) -> None:
        for (name,) in self._store.query(
            "SELECT name FROM system.tables WHERE database = {db:String} "
            "AND startsWith(name, {prefix:String})",
            {"db": self._store.database, "prefix": self._prefix},
        ):
            number = name[len(self._prefix):]
            if number.isdigit() and int(number) < tick:
                self._store.command(f"DROP TABLE IF EXISTS `{name}`")
