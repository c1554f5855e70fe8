"""The telemetry store: one clickhouse-connect client, chosen by a URL.

URLs:
    ``chdb:///abs/dir``            embedded ClickHouse (chDB) on disk, owned by one process
    ``chdb://memory``              embedded and in memory (tests)
    ``http(s)://user@host:8123/db`` a ClickHouse server; the password comes from the environment

An optional ``?database=NAME`` (chDB) or path (``/db``, servers) picks the database; the default
is ``watchloop``. The same SQL runs on every backend.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from .boundary import classify, describe, translated
from .clock import utc_now
from .errors import (
    STORE_ERRORS,
    StoreError,
    StoreLockedError,
    StoreNotFoundError,
    StoreUnavailableError,
)

log = logging.getLogger("watchloop.store")

DEFAULT_DATABASE = "watchloop"
PASSWORD_ENV = "WATCHLOOP_CLICKHOUSE_PASSWORD"
OWNER_FILE = "watchloop-owner.json"


@dataclass(frozen=True)
class StoreLocation:
    """Where a store lives, parsed from its URL."""

    url: str
    backend: str  # "chdb" or "http"
    path: Path | None  # on-disk chDB directory; None for memory or a server
    database: str
    host: str = ""
    port: int = 0
    username: str = ""
    secure: bool = False

    @classmethod
    def parse(cls, url: str) -> StoreLocation:
        """Parse a store URL, raising ``StoreError`` with the accepted forms if it is not one."""
        parsed = urlparse(url)
        query = parse_qs(parsed.query)
        if parsed.scheme == "chdb":
            database = query.get("database", [DEFAULT_DATABASE])[0]
            if parsed.netloc in ("memory", ":memory:"):
                return cls(url=url, backend="chdb", path=None, database=database)
            if parsed.netloc or not parsed.path.startswith("/"):
                raise StoreError(
                    f"store URL {url!r}: an embedded store needs an absolute directory, "
                    "as in chdb:///var/lib/watchloop, or chdb://memory"
                )
            return cls(url=url, backend="chdb", path=Path(parsed.path), database=database)
        if parsed.scheme in ("http", "https"):
            if not parsed.hostname:
                raise StoreError(f"store URL {url!r}: no host, expected http://user@host:8123/db")
            secure = parsed.scheme == "https"
            database = unquote(parsed.path.strip("/")) or DEFAULT_DATABASE
            return cls(
                url=url,
                backend="http",
                path=None,
                database=database,
                host=parsed.hostname,
                port=parsed.port or (8443 if secure else 8123),
                username=unquote(parsed.username or "default"),
                secure=secure,
            )
        raise StoreError(
            f"store URL {url!r}: unknown scheme {parsed.scheme!r}; expected chdb:///abs/dir, "
            "chdb://memory or http(s)://user@host:8123/db"
        )

    @property
    def display(self) -> str:
        """The URL without credentials, safe for logs."""
        if self.backend == "chdb":
            return f"chdb://{self.path}" if self.path else "chdb://memory"
        scheme = "https" if self.secure else "http"
        return f"{scheme}://{self.username}@{self.host}:{self.port}/{self.database}"


class _NoLock:
    """Stands in for the lock where the client is safe to share between threads."""

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


class Store:
    """A thin layer over one clickhouse-connect client.

    Thread-safe. Embedded chDB handles are not safe for concurrent use, so calls on them are
    serialised on a lock (ClickHouse itself parallelises each query); a server's HTTP client
    runs calls from several threads at once (it keeps no session), so a slow console query
    does not hold up ingest.
    """

    def __init__(self, client: Any, location: StoreLocation, *, on_close: Any = None) -> None:
        self._client = client
        self.location = location
        self._lock: Any = threading.RLock() if location.backend == "chdb" else _NoLock()
        self._on_close = on_close
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once ``close`` was called."""
        return self._closed

    @property
    def database(self) -> str:
        """The database every unqualified table name refers to."""
        return self.location.database

    def insert(
        self, table: str, rows: Sequence[Sequence[Any]], column_names: Sequence[str]
    ) -> int:
        """Insert rows (one sequence per row) and return how many were written."""
        if not rows:
            return 0
        with self._translated(f"insert into {table}"):
            self._client.insert(table, rows, column_names=list(column_names))
        return len(rows)

    def insert_columns(self, table: str, columns: Mapping[str, Sequence[Any]]) -> int:
        """Insert column-oriented data (one sequence per column); the fastest path."""
        names = list(columns)
        data = [columns[name] for name in names]
        count = len(data[0]) if data else 0
        if count == 0:
            return 0
        with self._translated(f"insert into {table}"):
            self._client.insert(table, data, column_names=names, column_oriented=True)
        return count

    def raw_insert(self, table: str, data: bytes, fmt: str,
                   settings: Mapping[str, Any] | None = None) -> None:
        """Insert data already in a ClickHouse input format (e.g. JSONEachRow) for it to parse."""
        with self._translated(f"insert into {table}"):
            self._client.raw_insert(
                table, insert_block=data, fmt=fmt, settings=dict(settings or {}))

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple]:
        """Run a SELECT with bound ``{name:Type}`` parameters and return its rows."""
        with self._translated("query"):
            return self._client.query(sql, parameters=dict(parameters or {})).result_rows

    def query_dicts(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[dict]:
        """Run a SELECT and return each row as a dict keyed by column name."""
        with self._translated("query"):
            result = self._client.query(sql, parameters=dict(parameters or {}))
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    def query_df(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        """Run a SELECT and return a pandas DataFrame (timezones of DateTime64 are dropped)."""
        with self._translated("query"):
            return self._client.query_df(sql, parameters=dict(parameters or {}))

    def scalar(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        """Run a SELECT that returns one value."""
        rows = self.query(sql, parameters)
        return rows[0][0] if rows else None

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        """Run DDL or another statement that returns no rows."""
        with self._translated("command"):
            return self._client.command(sql, parameters=dict(parameters or {}))

    def ping(self) -> bool:
        """True when the store answers a trivial query."""
        try:
            return self.scalar("SELECT 1") == 1
        except StoreError:
            return False

    def now(self) -> datetime:
        """The current time as the store records it (``clock.utc_now``)."""
        return utc_now()

    def close(self) -> None:
        """Close the client; an embedded store flushes and releases its directory lock."""
        self._lock.acquire()
        try:
            if self._closed:
                return
            self._closed = True
            try:
                self._client.close()
            finally:
                if self._on_close is not None:
                    self._on_close()
        finally:
            self._lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _translated(self, action: str) -> _Translated:
        return _Translated(self, action)


class _Translated:
    """Hold the store lock and turn client-library errors into ``StoreError``."""

    def __init__(self, store: Store, action: str) -> None:
        self._store = store
        self._action = action

    def __enter__(self) -> None:
        self._store._lock.acquire()
        if self._store._closed:
            self._store._lock.release()
            raise StoreError(f"{self._action}: the store {self._store.location.display} is closed")

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        self._store._lock.release()
        if exc is None or isinstance(exc, StoreError):
            return False
        kind = classify(exc)
        if kind is None:
            return False
        where = self._store.location.display
        if kind == "failed":  # the full text: a query's error is what its author needs
            raise StoreError(f"{self._action} on {where} failed: {exc}") from exc
        raise STORE_ERRORS[kind](
            f"{self._action}: {describe(kind, 'the store', where, exc)}") from exc


def open_store(
    url: str,
    *,
    password: str | None = None,
    create_database: bool = True,
    attempts: int = 1,
    backoff_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> Store:
    """Open the store at ``url`` and make sure its database exists.

    With ``create_database=False`` nothing is created: a store directory or a database that
    does not exist yet raises ``StoreNotFoundError`` (read-only commands open stores so).

    For a server, the password is ``password`` or else the ``WATCHLOOP_CLICKHOUSE_PASSWORD``
    environment variable, and an unreachable server is tried ``attempts`` times, waiting
    ``backoff_s`` and then twice as long each time. Raises ``StoreLockedError`` if another
    process owns an embedded directory, and ``StoreUnavailableError`` if a server does not
    answer.
    """
    location = StoreLocation.parse(url)
    if location.backend == "chdb":
        if not create_database and location.path is not None and not (
                location.path / "metadata").is_dir():
            raise StoreNotFoundError(f"no store at {location.display}")
        return _open_chdb(location, create_database)
    password = password if password is not None else os.environ.get(PASSWORD_ENV, "")
    for attempt in range(1, attempts + 1):
        try:
            return _open_server(location, password, create_database)
        except StoreUnavailableError as exc:
            if attempt == attempts:
                raise
            delay = backoff_s * 2 ** (attempt - 1)
            log.warning("%s (attempt %d of %d); retrying in %.1fs", exc, attempt, attempts,
                        delay)
            sleep(delay)
    raise AssertionError("unreachable")


def _use_database(client: Any, location: StoreLocation, create: bool) -> None:
    """Point ``client`` at the store's database, creating it, or (``create=False``) raising
    ``StoreNotFoundError`` where it does not exist."""
    if create:
        client.command(f"CREATE DATABASE IF NOT EXISTS `{location.database}`")
    elif not client.query("SELECT count() FROM system.databases WHERE name = {db:String}",
                          parameters={"db": location.database}).result_rows[0][0]:
        raise StoreNotFoundError(f"no database {location.database!r} in {location.display}")
    client.database = location.database


def _open_server(location: StoreLocation, password: str, create_database: bool) -> Store:
    import clickhouse_connect

    with translated("the ClickHouse server", location.display, STORE_ERRORS):
        client = clickhouse_connect.get_client(
            host=location.host,
            port=location.port,
            username=location.username,
            password=password,
            secure=location.secure,
            # No session: a session admits one query at a time, and threads share this client.
            autogenerate_session_id=False,
        )
        try:
            _use_database(client, location, create_database)
        except BaseException:
            client.close()
            raise
    return Store(client, location)


def _open_chdb(location: StoreLocation, create_database: bool) -> Store:
    import clickhouse_connect
    from clickhouse_connect.driver.exceptions import ProgrammingError

    on_close = None
    if location.path is None:
        dsn = "chdb://memory"
    else:
        location.path.mkdir(parents=True, exist_ok=True)
        _refuse_if_locked(location.path)
        dsn = f"chdb://{location.path}"
    try:
        client = clickhouse_connect.get_client(dsn=dsn)
        _use_database(client, location, create_database)
    except StoreNotFoundError:
        client.close()
        raise
    except ProgrammingError as exc:
        if location.path is not None:
            _refuse_if_locked(location.path)
        raise StoreError(f"cannot open the embedded store {location.display}: {exc}") from exc
    if location.path is not None:
        on_close = _claim_ownership(location.path)
    return Store(client, location, on_close=on_close)


def _refuse_if_locked(directory: Path) -> None:
    """Raise ``StoreLockedError`` naming the owner if another process holds ``directory``.

    ClickHouse holds an exclusive flock on ``<dir>/status`` while it runs; probing it first
    gives a clear error instead of chDB's generic "Error initializing EmbeddedServer".
    """
    status = directory / "status"
    if not status.exists():
        return
    with open(status, "rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreLockedError(_locked_message(directory)) from None
        fcntl.flock(handle, fcntl.LOCK_UN)


def _locked_message(directory: Path) -> str:
    owner = read_owner(directory)
    who = "another process"
    if owner:
        who = f"process {owner.get('pid')} (`{owner.get('command', '?')}`)"
    message = (
        f"the embedded store chdb://{directory} is already open in {who}. "
        "Only one process can own an embedded store: go through that process"
    )
    if owner and owner.get("api_url"):
        message += f"'s API at {owner['api_url']}"
    return message + ", stop it first, or point both at a ClickHouse server URL (http://host:8123)."


def read_owner(directory: Path) -> dict[str, Any] | None:
    """The owner record a Watchloop process left in an embedded store directory, if any."""
    try:
        return json.loads((directory / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None


def record_owner(directory: Path, **details: Any) -> None:
    """Write (or update) who owns an embedded store directory, so others can be told."""
    owner = read_owner(directory) or {}
    if owner.get("pid") != os.getpid():
        owner = {
            "pid": os.getpid(),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    owner.update(details)
    (directory / OWNER_FILE).write_text(json.dumps(owner))


def _claim_ownership(directory: Path) -> Any:
    record_owner(directory)

    def release() -> None:
        owner = read_owner(directory)
        if owner and owner.get("pid") == os.getpid():
            (directory / OWNER_FILE).unlink(missing_ok=True)

    return release
