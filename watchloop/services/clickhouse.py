"""A real ClickHouse server: chdb-core's own HTTP and native TCP listeners.

No ClickHouse server package installs here, but the chDB engine is ClickHouse 26.9 and can
serve its real HTTP interface (``SYSTEM START LISTEN HTTP``) while one of its queries runs.
The child process runs that query, one that never ends (it sleeps a row at a time), in the
directory holding the server's ``config.xml``; the listeners live as long as it does. The
data directory is owned by that process, so every client, this one included, goes through
HTTP: exactly the shape of a Watchloop deployment on a ClickHouse server. This depends on
an undocumented entry point (``chdb._chdb.query``), so chdb is pinned and this launcher is
tested.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from xml.sax.saxutils import escape

from watchloop.services.base import ServiceProcess, free_port, http_ready

__all__ = ["ClickHouseServer"]

_HOLD = """
import secrets
import sys
from chdb import _chdb
_chdb.query(
    "SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; "
    "SELECT count() FROM system.numbers WHERE NOT ignore(sleepEachRow(1)) "
    "SETTINGS max_block_size = 1",
    "TabSeparated", path=sys.argv[1])
"""

_CONFIG = """<clickhouse>
    <listen_host>{host}</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <users_config>users.xml</users_config>
</clickhouse>
"""

# ``default`` (no password) is what the engine's own process connects as; clients use
# ``watchloop``, whose password is checked.
_USERS = """<clickhouse>
    <profiles><default/></profiles>
    <quotas><default/></quotas>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
        <watchloop>
            <password>{password}</password>
            <networks><ip>::/0</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
            <access_management>1</access_management>
        </watchloop>
    </users>
</clickhouse>
"""


class ClickHouseServer(ServiceProcess):
    """ClickHouse's HTTP (and native) interface on free loopback ports, served by chdb-core.

    Clients log in as ``watchloop`` with ``password`` (random unless given); pass it to them
    through ``WATCHLOOP_CLICKHOUSE_PASSWORD``, never in a URL.
    """

    name = "clickhouse"

    def __init__(self, workdir: Path, *, http_port: int | None = None,
                 tcp_port: int | None = None, password: str | None = None,
                 host: str | None = None) -> None:
        super().__init__(workdir)
        if host is not None:
            self.host = host
        self.http_port = http_port or free_port(self.host)
        self.tcp_port = tcp_port or free_port(self.host)
        # A fresh random password unless one is given (from the environment, never code).
        self.password = password if password is not None else secrets.token_urlsafe(16)

    @classmethod
    def available(cls) -> str | None:
        """None when chdb is importable in this interpreter, else how to install it."""
        try:
            import chdb  # noqa: F401
        except ImportError:
            return "chdb is not installed: pip install 'chdb==4.4.0'"
        return None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.http_port}"

    def url(self, database: str = "watchloop") -> str:
        """A Watchloop store URL for this server (the password comes from the environment)."""
        return f"http://watchloop@{self.host}:{self.http_port}/{database}"

    def prepare(self) -> None:
        (self.workdir / "config.xml").write_text(_CONFIG.format(
            host=self.host, http_port=self.http_port, tcp_port=self.tcp_port))
        (self.workdir / "users.xml").write_text(_USERS.format(password=escape(self.password)))
        (self.workdir / "data").mkdir(exist_ok=True)

    def command(self) -> list[str]:
        return [sys.executable, "-c", _HOLD, str(self.workdir / "data")]

    def is_ready(self) -> bool:
        return http_ready(f"http://{self.address}/ping")
