"""``watchloop serve``: deploy, promote, roll back and inspect a model on the configured
serving backend, through the same verified and watched path the feedback loop takes."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from telemetry import Migrator, open_store

from .config import WatchloopConfig


def add_parser(commands: Any) -> None:
    """The ``serve`` command and its actions."""
    serve = commands.add_parser(
        "serve", help="deploy, promote, roll back or inspect a model on the serving backend",
        description="Every action is verified (warm-up, replay of recent requests), watched "
                    "after promotion (rolled back by itself on regression) and recorded in "
                    "the deployments table with who did it.")
    actions = serve.add_subparsers(dest="serve_command", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("model", help="the model's name")
    common.add_argument("--actor", default=f"cli:{getpass.getuser()}",
                        help="who is acting, for the deployments table (default: cli:$USER)")
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    watched = argparse.ArgumentParser(add_help=False)
    watched.add_argument("--no-watch", action="store_true",
                         help="skip the post-deploy analysis (the promotion is final at once)")

    deploy = actions.add_parser("deploy", parents=[common, watched],
                                help="deploy a new version, verify it, promote and watch it")
    deploy.add_argument("--version", required=True, help="the new version (Triton: an integer)")
    deploy.add_argument("--model-file", required=True, type=Path,
                        help="a TorchScript file scoring [n, len(features)] floats")
    deploy.add_argument("--features", required=True,
                        help="the feature names, comma-separated, in the model's order")
    promote = actions.add_parser("promote", parents=[common, watched],
                                 help="verify and promote a deployed version")
    promote.add_argument("version", help="a deployed version that is not serving")
    rollback = actions.add_parser("rollback", parents=[common],
                                  help="give the traffic back to the previous version")
    rollback.add_argument("--to", metavar="VERSION", help="the version to roll back to")
    rollback.add_argument("--reason", default="rolled back by hand", help="recorded with it")
    actions.add_parser("status", parents=[common],
                       help="the server's health, the model's versions and recent deployments")


def run(args: argparse.Namespace, config: WatchloopConfig) -> int:
    """Carry out one ``serve`` action; 0 when it did what was asked."""
    from serving_adapters import ModelPackage, build_adapter, build_deployer

    settings = config.serving
    if settings is None:
        print("watchloop: no serving: section in the config; add one naming the backend "
              "(see watchloop.example.yaml)", file=sys.stderr)
        return 2
    adapter = build_adapter(settings.backend)
    progress = (lambda _m: None) if args.json else (
        lambda message: print(f"watchloop: {message}", file=sys.stderr, flush=True))
    with open_store(config.store_url(), password=config.store_password()) as store:
        Migrator(store).migrate()
        deployer = build_deployer(settings, store, adapter=adapter, progress=progress)
        try:
            if args.serve_command == "status":
                return _status(args, adapter, deployer)
            if args.serve_command == "deploy":
                features = tuple(f.strip() for f in args.features.split(",") if f.strip())
                package = ModelPackage(args.model, args.version, args.model_file.resolve(),
                                       features, settings.payload_log.server_config()
                                       if settings.payload_log else None)
                result = deployer.deploy(package, args.actor, watch=not args.no_watch)
            elif args.serve_command == "promote":
                result = deployer.promote(args.model, args.version,
                                          _deployed_features(deployer, args.model, args.version),
                                          args.actor, watch=not args.no_watch)
            else:
                result = deployer.rollback(args.model, args.actor, to=args.to,
                                           reason=args.reason)
        finally:
            adapter.close()
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
    else:
        timings = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s"
                            for k, v in summary["timings"].items())
        print(f"{result.model} version {result.version}: {result.outcome}"
              + (f" ({result.reason})" if result.reason else "")
              + (f"\n  {timings}" if timings else ""))
    return 0 if result.outcome in ("promoted", "rolled_back") else 1


def _status(args: argparse.Namespace, adapter: Any, deployer: Any) -> int:
    health = adapter.health()
    versions = adapter.versions(args.model)
    history = deployer.log.history(args.model, limit=10)
    if args.json:
        print(json.dumps({"backend": adapter.backend, "address": adapter.address,
                          "healthy": health.ok, "health": health.detail,
                          "versions": [v.__dict__ for v in versions],
                          "deployments": history}, indent=1, default=str))
        return 0 if health.ok else 1
    print(f"{adapter.backend} at {adapter.address}: {'healthy' if health.ok else 'DOWN'} "
          f"({health.detail})")
    if not versions:
        print(f"  no versions of {args.model}")
    for v in versions:
        marker = "*" if v.serving else " "
        print(f"  {marker} {args.model} {v.version:<10} {v.state:<12} {v.detail}")
    if history:
        print("recent deployments:")
    for row in history:
        reason = f"  {row['reason']}" if row["reason"] else ""
        print(f"  {row['ts']:%Y-%m-%d %H:%M:%S}  {row['action']:<8} {row['model_version']:<8} "
              f"{row['status']:<12} {row['actor']}{reason}")
    return 0 if health.ok else 1


def _deployed_features(deployer: Any, model: str, version: str) -> tuple[str, ...]:
    for row in deployer.log.history(model, limit=500):
        if row["action"] == "deploy" and row["model_version"] == version \
                and row["status"] == "ok":
            return tuple(row["details"].get("features", ()))
    return ()

