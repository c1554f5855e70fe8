"""``watchloop demo``: the whole loop on one machine, on real parts.

Starts the stack (``stack.DemoStack``), then Watchloop itself (``watchloop up`` over the
stack's configuration, with the console) and the demo's world (``drivers``), and tells the
story (``story.DemoStory``) on the terminal. Ctrl-C (or SIGTERM) stops Watchloop, then every
server the demo started, by PID.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

from feedback import FeedbackService
from serving_adapters import build_adapter
from telemetry import open_store
from watchloop.services import ServiceStartError
from watchloop.services.base import BinaryNotFound, free_port

from .drivers import DogStatsdCapture, FeaturePipeline, ServedTraffic
from .pace import FAST, WATCHED
from .stack import FEATURE_TOPIC, LABEL_TOPIC, MODEL, Backend, DemoStack, demo_config
from .story import DemoStory, Progress, Summary

MARKER = ".watchloop-demo"
LOG_FILE = "watchloop.log"


def run_demo(*, data_dir: Path, backend: Backend = "torchserve", fast: bool = False,
             api_port: int | None = None, console_port: int | None = None,
             console: bool = True) -> int:
    """Run the demo until interrupted; returns the exit status."""
    from watchloop.shell import Shell, console_settings, serve_console
    from watchloop.wiring import build_components, build_writer

    pace = FAST if fast else WATCHED
    problem = _fresh_directory(data_dir)
    if problem:
        print(f"watchloop demo: {problem}", flush=True)
        return 2
    _log_to_file(data_dir / LOG_FILE)
    progress = Progress()
    progress(f"Watchloop demo at the {pace.name} pace on {backend}; its files, logs and "
             f"store are in {data_dir} (log: {data_dir / LOG_FILE})")
    stack = DemoStack(data_dir / "services", backend, progress)
    statsd = DogStatsdCapture(on_datagram=lambda line: progress(f"datadog ← {_short(line)}"))
    try:
        stack.start()
    except (BinaryNotFound, ServiceStartError) as exc:
        statsd.stop()
        print(f"watchloop demo: cannot start the stack: {exc}", flush=True)
        return 1
    try:
        config = demo_config(stack, pace, data_dir=data_dir, api_port=_port(api_port, 8765),
                             console_port=_port(console_port, 8501),
                             statsd_port=statsd.port, console=console)
        store = open_store(config.store_url())
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        writer = build_writer(config, store, registry)
        components = build_components(config, store, writer, registry)
        feedback = next(c for c in components if isinstance(c, FeedbackService))
        assert config.serving is not None and config.feedback is not None
        bootstrap = stack.kafka.bootstrap_servers
        adapter = build_adapter(config.serving.backend)
        urls = {"api": f"http://{config.api.host}:{config.api.port}",
                "mlflow": stack.mlflow.tracking_uri}
        if console:
            urls["console"] = f"http://{config.console.host}:{config.console.port}"
        training = config.feedback.training
        story = DemoStory(
            store=store, stack=stack, feedback=feedback,
            traffic=ServedTraffic(adapter, MODEL, bootstrap_servers=bootstrap,
                                  label_topic=LABEL_TOPIC, requests_per_s=pace.requests_per_s,
                                  instances_per_request=pace.instances_per_request,
                                  label_delay_s=pace.label_delay_s),
            pipeline=FeaturePipeline(bootstrap, FEATURE_TOPIC, events_per_s=pace.features_per_s,
                                     stall_s=pace.pipeline_stall_s),
            statsd=statsd, pace=pace, training_span=training.window + training.holdout,
            summary=Summary(backend=backend, pace=pace.name, urls=urls, services=stack.pids()),
            data_dir=data_dir, progress=progress)
        shell = Shell(config, store, writer, components=[statsd, *components, story],
                      registry=registry)
        try:
            shell.start()
        except BaseException:
            shell.stop()
            raise
        progress(f"Watchloop runs: API {urls['api']}"
                 + (f", console {urls['console']}" if console else ""))
        try:
            if console:
                settings = console_settings(config, urls["api"])
                shell.run(console=lambda: serve_console(store, config.console.host,
                                                        config.console.port, settings))
            else:
                shell.run()
        finally:
            adapter.close()
    finally:
        started = stack.pids()
        stack.stop()
        gone = ", ".join(f"{name} (pid {pid})" for name, pid in started.items())
        progress(f"stopped Watchloop and every server it started: {gone}")
    return 0


def _port(given: int | None, default: int) -> int:
    """The port asked for, the default when none was, a free one for 0."""
    if given is None:
        return default
    return given or free_port()


def _fresh_directory(data_dir: Path) -> str | None:
    """Empty the demo's directory of a previous run; refuse one the demo did not make."""
    if data_dir.exists() and any(data_dir.iterdir()):
        if not (data_dir / MARKER).exists():
            return (f"{data_dir} exists and was not made by the demo; pass --data-dir with "
                    "a new or empty directory")
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).write_text("made by `watchloop demo`; emptied at its next start\n")
    return None


def _log_to_file(path: Path) -> None:
    """Watchloop's own log to ``path``; the terminal keeps the story and the warnings."""
    # MLflow prints run URLs and download progress bars; the story says what happened
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for chatty in ("mlflow", "kafka"):
        logging.getLogger(chatty).setLevel(logging.ERROR)
    root = logging.getLogger()
    for handler in root.handlers:
        handler.setLevel(logging.WARNING)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root.addHandler(handler)


def _short(datagram: str, limit: int = 110) -> str:
    return datagram if len(datagram) <= limit else datagram[:limit - 1] + "…"
