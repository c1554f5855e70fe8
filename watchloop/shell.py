"""``watchloop up``: every component in one process, which owns the embedded store.

The API runs on uvicorn in a thread; the Streamlit console runs on the main thread (Streamlit
installs its signal handlers there). SIGTERM or SIGINT stops sources first, then flushes and
closes the store, so every acknowledged record is on disk.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from alerts.evaluator import AlertEvaluator
from feedback import FeedbackService
from serving_adapters import Deployer
from telemetry import Migrator, TelemetryWriter
from telemetry.extras import require
from telemetry.store import Store, record_owner

from .api import create_app
from .config import WatchloopConfig
from .metrics import ShellMetrics

log = logging.getLogger("watchloop.shell")


class Component(Protocol):
    """Something the shell starts and stops: a collector, a monitor, a traffic generator."""

    name: str

    def start(self) -> None:
        """Begin work in background threads; return at once."""

    def stop(self) -> None:
        """Stop taking new work, flush what is buffered, and return when done."""


class ApiServer:
    """The FastAPI app on uvicorn, in a background thread."""

    name = "api"

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        self._server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        )
        self._thread = threading.Thread(target=self._server.run, name="watchloop-api", daemon=True)
        self.host = host

    @property
    def port(self) -> int:
        """The bound port (useful when the configured port was 0)."""
        return self._server.servers[0].sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15) -> None:
        """Start serving and wait until the socket is bound."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API could not start on {self.host} (port in use?)")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class Shell:
    """Runs the API, the configured components and the console over one store."""

    def __init__(
        self,
        config: WatchloopConfig,
        store: Store,
        writer: TelemetryWriter,
        *,
        components: list[Component] | None = None,
        registry: CollectorRegistry | None = None,
        deployer: Deployer | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.components = list(components or [])
        self.metrics = ShellMetrics(registry or CollectorRegistry())
        self.writer = writer
        # the API's rollback without a feedback loop; with one, it deploys through its own
        self.feedback = next((c for c in self.components if isinstance(c, FeedbackService)),
                             None)
        self.deployer = deployer or (self.feedback.loop.deployer if self.feedback else None)
        self.api: ApiServer | None = None
        self._started = False
        self._stopped = threading.Event()

    def start(self) -> None:
        """Migrate the store, start the API and every component."""
        applied = Migrator(self.store).migrate()
        if applied:
            names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied)
            log.info("applied migrations: %s", names)
        if self.config.api.enabled:
            token = self.config.api.token.get_secret_value() if self.config.api.token else None
            app = create_app(
                self.store,
                self.writer,
                self.metrics,
                token=token,
                max_body_bytes=self.config.api.max_body_bytes,
                is_ready=lambda: self._started,
                alerts=next((c.alerts for c in self.components
                             if isinstance(c, AlertEvaluator)), None),
                feedback=self.feedback,
                deployer=self.deployer,
            )
            self.api = ApiServer(app, self.config.api.host, self.config.api.port)
            self.api.start()
            log.info("API on %s", self.api.url)
            if self.store.location.path is not None:
                record_owner(self.store.location.path, api_url=self.api.url)
        for component in self.components:
            component.start()
            log.info("started %s", component.name)
        self._started = True

    def run(self, *, console: Callable[[], None] | None = None) -> None:
        """Block until SIGTERM/SIGINT (or the console exits), then stop everything."""
        try:
            if console is not None:
                console()  # returns once Streamlit handled a signal and stopped
            else:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, lambda *_: self._stopped.set())
                self._stopped.wait()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop sources first, then the API, then flush and close the store."""
        self._stopped.set()
        self._started = False
        for component in reversed(self.components):
            try:
                component.stop()
            except Exception:
                log.exception("stopping %s failed", component.name)
        if self.api is not None:
            self.api.stop()
        try:
            self.writer.close()
        finally:
            self.store.close()
        log.info("stopped; the store is closed")


def console_settings(config: WatchloopConfig, api_url: str | None) -> Any:
    """What the console needs of the config (``dashboard.shared.ConsoleSettings``): rules,
    SLOs, models, the API's address."""
    from dashboard.shared import ConsoleSettings
    from feedback import tracking_uri

    mlflow = (tracking_uri(config.feedback, config.data_dir)
              if config.feedback is not None else None)
    return ConsoleSettings(
        rules=config.alert_rules(),
        slos=tuple(config.monitors.slos) if config.monitors is not None else (),
        api_url=api_url, token_required=config.api.token is not None,
        refresh=config.console.refresh, models=tuple(m.name for m in config.models),
        mlflow_uri=mlflow)


def serve_console(store: Store, host: str, port: int,
                  settings: Any = None) -> None:
    """Run the Streamlit console on this thread (the main one) over the process's store."""
    bootstrap = require("streamlit.web.bootstrap", "the console")

    from dashboard import shared

    shared.use_store(store)
    shared.use_settings(settings)
    script = str(Path(shared.__file__).with_name("app.py"))
    flags = {
        "server_address": host,
        "server_port": port,
        "server_headless": True,
        "browser_gatherUsageStats": False,
        "global_developmentMode": False,
        "server_fileWatcherType": "none",
        "client_toolbarMode": "viewer",
    }
    bootstrap.load_config_options(flag_options=flags)
    bootstrap.run(script, False, [], flags)
