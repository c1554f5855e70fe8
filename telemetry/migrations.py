"""Versioned, idempotent schema migrations, recorded in the store itself.

Each migration is a file ``migrations/NNNN_name.sql`` shipped with the package: statements
separated by semicolons at line ends, each safe to re-run (``IF NOT EXISTS``). Applied
versions and a checksum of their text are recorded in ``schema_migrations``; a file edited
after it was applied is refused rather than silently diverging from the store.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from .claims import create_marker
from .errors import MigrationError, StoreError
from .store import Store

log = logging.getLogger("watchloop.migrations")

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""


@dataclass(frozen=True)
class Migration:
    """One schema migration file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    def statements(self) -> list[str]:
        """The file's statements, comments and blank lines removed."""
        lines = [line for line in self.sql.splitlines() if not line.lstrip().startswith("--")]
        return [stmt.strip() for stmt in re.split(r";\s*$", "\n".join(lines), flags=re.MULTILINE)
                if stmt.strip()]


@dataclass(frozen=True)
class MigrationStatus:
    """One migration and whether the store has it."""

    version: int
    name: str
    applied_at: object | None  # datetime when applied

    @property
    def applied(self) -> bool:
        return self.applied_at is not None


def bundled_migrations() -> list[Migration]:
    """The migrations shipped with this version of Watchloop, in order."""
    found = []
    for entry in resources.files("telemetry").joinpath("migrations").iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


class MigrationLock:
    """A mutex in the store, for migrations: a marker table (``claims.create_marker``) that one
    process creates, the others waiting until the holder drops it. A lock older than
    ``stale_after_s`` (its holder died mid-migration) is broken."""

    NAME = "_watchloop_migration_lock"

    def __init__(self, store: Store, *, stale_after_s: float = 120.0, poll_s: float = 0.2,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._store = store
        self._stale_after_s = stale_after_s
        self._poll_s = poll_s
        self._sleep = sleep

    def __enter__(self) -> MigrationLock:
        while True:
            try:
                if create_marker(self._store, self.NAME):
                    return self
            except StoreError as exc:
                raise MigrationError(f"cannot take the migration lock: {exc}") from exc
            # the lock's age on the server's own clock: both times are the server's
            age = self._store.scalar(
                "SELECT dateDiff('second', metadata_modification_time, now()) "
                "FROM system.tables WHERE database = {db:String} AND name = {name:String}",
                {"db": self._store.database, "name": self.NAME})
            if age is not None and age > self._stale_after_s:
                log.warning("breaking a migration lock held for %ss by a process that is gone",
                            age)
                self._store.command(f"DROP TABLE IF EXISTS {self.NAME}")
                continue
            self._sleep(self._poll_s)

    def __exit__(self, *exc: object) -> None:
        self._store.command(f"DROP TABLE IF EXISTS {self.NAME}")


class Migrator:
    """Applies pending migrations to a store and reports which are applied."""

    def __init__(self, store: Store, migrations: list[Migration] | None = None) -> None:
        self._store = store
        self._migrations = migrations if migrations is not None else bundled_migrations()

    def status(self) -> list[MigrationStatus]:
        """Every known migration with the time it was applied (None if pending); reads only."""
        ledger = self._store.scalar(
            "SELECT count() FROM system.tables WHERE database = {db:String} "
            "AND name = 'schema_migrations'", {"db": self._store.database})
        applied = self._applied() if ledger else {}
        return [
            MigrationStatus(m.version, m.name, applied.get(m.version, (None, None))[1])
            for m in self._migrations
        ]

    def migrate(self, *, lock_timeout_s: float = 120.0) -> list[Migration]:
        """Apply every pending migration in order; return those applied (empty if none).

        Several processes may start at once on one ClickHouse server: the one that takes the
        migration lock applies what is pending, the others wait for it and then verify.
        """
        applied = self._applied()
        if all(m.version in applied for m in self._migrations):
            return self._apply_pending(applied)  # only verifies the checksums
        with MigrationLock(self._store, stale_after_s=lock_timeout_s):
            return self._apply_pending(self._applied())

    def _apply_pending(self, applied: dict[int, tuple[str, object]]) -> list[Migration]:
        done = []
        for migration in self._migrations:
            if migration.version in applied:
                checksum, _ = applied[migration.version]
                if checksum != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was changed after "
                        f"it was applied (store has {checksum}, file has {migration.checksum}); "
                        "add a new migration instead of editing an applied one"
                    )
                continue
            for statement in migration.statements():
                try:
                    self._store.command(statement)
                except StoreError as exc:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} failed: {exc}"
                    ) from exc
            self._store.insert(
                "schema_migrations",
                [[migration.version, migration.name, migration.checksum, self._store.now()]],
                ["version", "name", "checksum", "applied_at"],
            )
            done.append(migration)
        return done

    def _applied(self) -> dict[int, tuple[str, object]]:
        self._store.command(_LEDGER_DDL)
        rows = self._store.query(
            "SELECT version, argMin(checksum, applied_at), min(applied_at) "
            "FROM schema_migrations GROUP BY version"
        )
        return {int(version): (checksum, at) for version, checksum, at in rows}
