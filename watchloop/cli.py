"""The ``watchloop`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from telemetry import Migrator, WatchloopError, open_store
from telemetry.errors import StoreNotFoundError

from .config import ConfigError, WatchloopConfig, find_config_file, load_config

log = logging.getLogger("watchloop")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watchloop",
        description="Observability-first ML-ops console and feedback loop.",
    )
    parser.add_argument("--version", action="version", version="watchloop 0.1.0")
    parser.add_argument(
        "-c", "--config", metavar="FILE",
        help="config file (default: $WATCHLOOP_CONFIG, else ./watchloop.yaml if present)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serving = argparse.ArgumentParser(add_help=False)
    serving.add_argument("--no-console", action="store_true", help="do not serve the console")
    serving.add_argument("--api-port", type=int, help="override api.port (0: any free port)")
    serving.add_argument("--console-port", type=int, help="override console.port")

    commands.add_parser(
        "up", parents=[serving], help="run every component, the API and the console")
    demo = commands.add_parser(
        "demo", parents=[serving],
        help="the whole loop on one machine: Kafka, Redis, MLflow, a model server and "
             "Watchloop with its console; drift is injected and the loop closes on its own",
        description="Starts a Kafka broker (Tansu), Redis, MLflow (sqlite) and TorchServe "
                    "(or Triton) on loopback ports, then Watchloop and its console over an "
                    "embedded store. It trains and deploys a fraud model, drives traffic "
                    "through the model server (payload logs and delayed labels through "
                    "Kafka), runs a feature pipeline with lag, and after a few minutes "
                    "injects drift: alert, retraining, gate and hot-swap follow on their "
                    "own. Ctrl-C stops everything it started. The config file is not read.")
    demo.add_argument("--data-dir", default=".watchloop-demo",
                      help="its store, servers and logs; emptied at each start "
                           "(default: %(default)s)")
    demo.add_argument("--fast", action="store_true",
                      help="close the loop within about 3 minutes (the default pace is "
                           "slower, for a person watching)")
    demo.add_argument("--backend", choices=("torchserve", "triton"), default="torchserve",
                      help="the model server (default: %(default)s)")
    demo.add_argument("--no-services", action="store_true",
                      help="no servers and no loop: synthetic traffic for three models "
                           "written straight into the store, for a quick look at the console")
    demo.add_argument("--rate", type=float, default=200,
                      help="records per second with --no-services (default: %(default)s)")

    config = commands.add_parser("config", help="inspect the config file")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_commands.add_parser("check", help="validate a config file; list every problem")
    check.add_argument("file", nargs="?", help="the file (default: as for --config)")

    gpu = commands.add_parser(
        "gpu", help="read this machine's GPUs through NVML (or a dcgm-exporter) and print "
                    "the gpu_metrics rows as JSON; exit 1 when no GPU could be read")
    gpu.add_argument("--once", action="store_true", help="read once and exit")
    gpu.add_argument("--dcgm-url", metavar="URL",
                     help="scrape this dcgm-exporter (…:9400/metrics) instead of NVML")
    gpu.add_argument("--interval", type=float, default=15.0, help="seconds between reads")

    backtest = commands.add_parser(
        "backtest", help="replay an alert rule over stored history, as it would have run")
    backtest.add_argument("rule", help="the rule's name (alerts.rules or alerts.rules_dir)")
    backtest.add_argument("--from", dest="start", default="7d", metavar="WHEN",
                          help="ISO 8601 time, or a duration back from now (default: 7d)")
    backtest.add_argument("--to", dest="end", default="0s", metavar="WHEN",
                          help="ISO 8601 time, or a duration back from now (default: now)")
    backtest.add_argument("--json", action="store_true", help="print the result as JSON")
    backtest.add_argument("--store", metavar="URL", help="store URL (overrides the config)")

    from .feedback_cli import add_parsers as add_feedback_parsers
    from .serve_cli import add_parser as add_serve_parser

    add_serve_parser(commands)
    add_feedback_parsers(commands)

    rules = commands.add_parser("rules", help="alert rules")
    rules_commands = rules.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    export = rules_commands.add_parser(
        "export", help="write the threshold and burn-rate rules as Prometheus alerting rules "
                       "over the gauges Watchloop exports")
    export.add_argument("--prometheus", action="store_true", required=True,
                        help="the Prometheus rule-file format (the only one)")
    export.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")

    store = commands.add_parser("store", help="manage the telemetry store")
    store_commands = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    store_commands.add_parser("migrate", help="apply pending schema migrations")
    store_commands.add_parser("status", help="show applied and pending migrations and row counts")
    for sub in (*store_commands.choices.values(),):
        sub.add_argument("--store", metavar="URL", help="store URL (overrides the config file)")
    serve = store_commands.add_parser(
        "serve", help="run a ClickHouse server (chdb-core's HTTP interface) that several "
                      "Watchloop processes, clickhouse-client or Grafana can share")
    serve.add_argument("--data-dir", required=True, help="the server's data directory")
    serve.add_argument("--host", default="127.0.0.1", help="listen address (%(default)s)")
    serve.add_argument("--port", type=int, default=8123, help="HTTP port (%(default)s)")
    serve.add_argument("--tcp-port", type=int, default=9000,
                       help="native protocol port (%(default)s)")
    return parser


def _store_serve(args: argparse.Namespace) -> int:
    """Serve a store directory over ClickHouse's HTTP interface until interrupted."""
    import os
    import signal
    import threading

    from telemetry.store import PASSWORD_ENV

    from .services import ClickHouseServer

    password = os.environ.get(PASSWORD_ENV)
    if not password:
        print(f"watchloop: set {PASSWORD_ENV} to the password clients will log in with "
              "(user watchloop)", file=sys.stderr)
        return 2
    server = ClickHouseServer(Path(args.data_dir).resolve(), http_port=args.port,
                              tcp_port=args.tcp_port, password=password, host=args.host)
    server.start()
    print(f"ClickHouse server on http://{server.address} (data in {server.workdir}); "
          f"point Watchloop at store URL {server.url()} with {PASSWORD_ENV} set. "
          "Ctrl-C stops it.", flush=True)
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    while not stopped.wait(1):
        if not server.running:
            print(f"watchloop: the ClickHouse server exited:\n{server.log_tail()}",
                  file=sys.stderr)
            return 1
    server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``watchloop`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Connection failures are reported once, by Watchloop, with the address; not per retry.
    for noisy in ("urllib3", "urllib3.connectionpool", "clickhouse_connect"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        if args.command == "config":
            return _config_check(args.file or args.config)
        if args.command == "store" and args.store_command == "serve":
            return _store_serve(args)
        if args.command == "demo" and not args.no_services:  # its own config, not the file's
            from .demo import run_demo

            return run_demo(data_dir=Path(args.data_dir).resolve(), backend=args.backend,
                            fast=args.fast, api_port=args.api_port,
                            console_port=args.console_port, console=not args.no_console)
        if args.command == "gpu":
            from .gpu_probe import probe

            return probe(once=args.once, dcgm_url=args.dcgm_url, interval_s=args.interval)
        path = find_config_file(args.config)
        config = load_config(path)
        logging.getLogger().setLevel(config.log_level)
        print(f"watchloop: config   {path or 'none (built-in defaults)'}", file=sys.stderr)
        if args.command == "store":
            return _store(args, config)
        if args.command == "backtest":
            return _backtest(args, config)
        if args.command == "rules":
            return _rules_export(args, config)
        if args.command == "serve":
            from .serve_cli import run as serve

            return serve(args, config)
        if args.command in ("retrain", "lineage"):
            from .feedback_cli import run as feedback

            return feedback(args, config)
        if args.command == "demo":
            return _demo(args, config)
        return _up(args, config)
    except ConfigError as exc:
        print(f"watchloop: invalid configuration:\n{exc}", file=sys.stderr)
        return 1
    except StoreNotFoundError as exc:
        print(f"watchloop: {exc}; `watchloop store migrate` or `watchloop up` creates it",
              file=sys.stderr)
        return 1
    except WatchloopError as exc:
        print(f"watchloop: error: {exc}", file=sys.stderr)
        return 1


def _config_check(file: str | None) -> int:
    path = find_config_file(file)
    if path is None:
        print("watchloop: no config file given, and no ./watchloop.yaml", file=sys.stderr)
        return 2
    try:
        config = load_config(path)
    except ConfigError as exc:
        count = len(exc.problems)
        print(f"{exc}\n{path}: {count} problem{'s' * (count != 1)}", file=sys.stderr)
        return 1
    print(f"{path}: OK (store {config.store.type}, {len(config.models)} models)")
    return 0


def _rules_export(args: argparse.Namespace, config: WatchloopConfig) -> int:
    import yaml

    from alerts.promexport import export

    document, skipped = export(config.alert_rules())
    text = yaml.safe_dump(document, sort_keys=False)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    for reason in skipped:
        print(f"watchloop: left out {reason}", file=sys.stderr)
    return 0


def _backtest(args: argparse.Namespace, config: WatchloopConfig) -> int:
    import json

    from alerts.backtest import backtest

    rules = {r.name: r for r in config.alert_rules()}
    if args.rule not in rules:
        known = ", ".join(sorted(rules)) or "none (add an alerts: section)"
        print(f"watchloop: no rule {args.rule!r}; the config has: {known}", file=sys.stderr)
        return 2
    start, end = _moment(args.start), _moment(args.end)
    url = args.store or config.store_url()
    with open_store(url, password=config.store_password(), create_database=False) as store:
        print(f"watchloop: store    {store.location.display}", file=sys.stderr)
        result = backtest(store, rules[args.rule], start, end)
    if args.json:
        print(json.dumps(result.as_dict(), indent=1))
        return 0
    print(f"{result.rule}: {result.steps} evaluations from {start:%Y-%m-%d %H:%M} to "
          f"{end:%Y-%m-%d %H:%M} UTC")
    print(f"  {len(result.firings)} firings, {result.pages_per_week:.1f} per week, firing "
          f"{result.time_firing.total_seconds() / 3600:.1f} h in all")
    for firing in result.firings:
        until = f"{firing.resolved_at:%Y-%m-%d %H:%M}" if firing.resolved_at else "still firing"
        labels = ", ".join(f"{k}={v}" for k, v in firing.labels)
        print(f"  {firing.fired_at:%Y-%m-%d %H:%M} → {until}  {labels}  peak {firing.peak}")
    return 0


def _moment(text: str) -> datetime:
    """ISO 8601 text, or a duration ("7d", "90m") back from now."""
    from drift.settings import _parse_duration
    from telemetry.clock import utc, utc_now

    back = _parse_duration(text)
    if isinstance(back, timedelta):
        return utc_now() - back
    try:
        return utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise SystemExit(f"watchloop: {text!r} is neither ISO 8601 nor a duration such as "
                         "7d") from None


def _store(args: argparse.Namespace, config: WatchloopConfig) -> int:
    from telemetry.queries import table_summaries

    url = args.store or config.store_url()
    # status only reads: it never creates a store where there is none
    with open_store(url, password=config.store_password(),
                    create_database=args.store_command == "migrate") as store:
        print(f"watchloop: store    {store.location.display}", file=sys.stderr)
        migrator = Migrator(store)
        if args.store_command == "migrate":
            applied = migrator.migrate()
            for m in applied:
                print(f"applied {m.version:04d}_{m.name}")
            print(f"{store.location.display}: schema up to date ({len(applied)} applied now)")
            return 0
        statuses = migrator.status()
        for status in statuses:
            state = (
                f"applied {status.applied_at:%Y-%m-%d %H:%M:%S}Z" if status.applied else "PENDING"
            )
            print(f"{status.version:04d}_{status.name:<30} {state}")
        if all(s.applied for s in statuses):
            print()
            for summary in table_summaries(store):
                newest = summary.newest_ingest or "-"
                print(f"{summary.table:<18} {summary.rows:>12,} rows   newest ingest {newest}")
        return 0


def _up(args: argparse.Namespace, config: WatchloopConfig, demo_rate: float | None = None) -> int:
    from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

    from serving_adapters import build_deployer

    from .demo import DemoProfiles, DemoTraffic
    from .shell import Shell, console_settings, serve_console
    from .wiring import build_components, build_writer

    updates = {}
    if args.api_port is not None:
        updates["api"] = config.api.model_copy(update={"port": args.api_port})
    if args.console_port is not None:
        updates["console"] = config.console.model_copy(update={"port": args.console_port})
    config = config.model_copy(update=updates)
    # A ClickHouse server may still be starting: try for about a minute before giving up.
    store = open_store(config.store_url(), password=config.store_password(), attempts=7)
    print(f"watchloop: store    {store.location.display}", file=sys.stderr)
    try:
        registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        writer = build_writer(config, store, registry)
        components = build_components(config, store, writer, registry)
    except BaseException:
        store.close()
        raise
    if demo_rate is not None:
        traffic = DemoTraffic(writer, rate_per_s=demo_rate)
        components[:0] = [DemoProfiles(store, traffic), traffic]
    # without a feedback loop, the API's rollback swaps through the serving backend itself
    deployer = (build_deployer(config.serving, store)
                if config.serving is not None and config.feedback is None else None)
    shell = Shell(config, store, writer, components=components, registry=registry,
                  deployer=deployer)
    try:
        shell.start()
    except BaseException:
        shell.stop()
        raise
    if shell.api is not None:
        print(f"watchloop: API      {shell.api.url}  (health: {shell.api.url}/healthz)", flush=True)
    if not config.console.enabled or args.no_console:
        shell.run()
        return 0
    host, port = config.console.host, config.console.port
    print(f"watchloop: console  http://{host}:{port}", flush=True)
    settings = console_settings(config, shell.api.url if shell.api is not None else None)
    shell.run(console=lambda: serve_console(store, host, port, settings))
    return 0


def _demo(args: argparse.Namespace, config: WatchloopConfig) -> int:
    """The whole loop on real parts; with ``--no-services``, ``up`` on an embedded store of
    its own with synthetic traffic."""
    data_dir = Path(args.data_dir).resolve()
    from .demo import demo_monitor_settings
    from .demo.run import MARKER

    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / MARKER).touch()  # a demo's directory: the full demo may empty it

    updates: dict = {"data_dir": data_dir, "models": [],
                     "monitors": config.monitors or demo_monitor_settings()}
    if config.store.type == "chdb":
        updates["store"] = config.store.model_copy(update={"path": data_dir / "store"})
    return _up(args, config.model_copy(update=updates), demo_rate=args.rate)


if __name__ == "__main__":
    sys.exit(main())
