"""``watchloop retrain`` and ``watchloop lineage``: the feedback loop by hand.

``retrain MODEL`` runs one retraining in this process under the shared policy (``--force``
skips the cooldown, the budget and the fresh-label minimum, never the one-run-per-model
lease), through the gate and, when it passes, the verified swap. ``retrain MODEL --promote
VERSION`` deploys a registered version, ``--rollback`` gives the traffic back; the champion
alias follows either. ``lineage MODEL`` prints each retraining from its alert to the
version it produced and what became of it.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from telemetry import Migrator, open_store

from .config import WatchloopConfig


def add_parsers(commands: Any) -> None:
    retrain = commands.add_parser(
        "retrain", help="retrain a model now (or promote / roll back a registered version)",
        description="Runs one retraining under the retrain policy shared through Redis: "
                    "point-in-time training rows, the training entrypoint in a subprocess, "
                    "MLflow, the gate, then the verified swap; every step is a lineage row.")
    retrain.add_argument("model", help="the model's name")
    retrain.add_argument("--actor", default=f"cli:{getpass.getuser()}",
                         help="who is acting, for the lineage (default: cli:$USER)")
    retrain.add_argument("--reason", default="retrained by hand", help="recorded with it")
    retrain.add_argument("--force", action="store_true",
                         help="skip the cooldown, the daily budget and the fresh-label minimum")
    action = retrain.add_mutually_exclusive_group()
    action.add_argument("--promote", metavar="VERSION",
                        help="deploy this registered version instead of training")
    action.add_argument("--rollback", action="store_true",
                        help="give the traffic back to the version that served before")
    retrain.add_argument("--json", action="store_true", help="print the result as JSON")

    lineage = commands.add_parser(
        "lineage", help="each retraining of a model, from its alert to the serving version")
    lineage.add_argument("model", help="the model's name")
    lineage.add_argument("--version", help="only the retraining that produced this version")
    lineage.add_argument("--limit", type=int, default=10, help="newest N retrainings (10)")
    lineage.add_argument("--json", action="store_true", help="print the rows as JSON")


def run(args: argparse.Namespace, config: WatchloopConfig) -> int:
    from feedback import LineageLog

    with open_store(config.store_url(), password=config.store_password()) as store:
        Migrator(store).migrate()
        if args.command == "lineage":
            return _lineage(args, LineageLog(store))
        return _retrain(args, config, store)


def _retrain(args: argparse.Namespace, config: WatchloopConfig, store: Any) -> int:
    from feedback import build_loop
    from serving_adapters import build_deployer

    if config.feedback is None:
        print("watchloop: no feedback: section in the config; add one (see "
              "watchloop.example.yaml)", file=sys.stderr)
        return 2
    progress = (lambda _m: None) if args.json else (
        lambda message: print(f"watchloop: {message}", file=sys.stderr, flush=True))
    serving = config.serving
    deployer = (build_deployer(serving, store, progress=progress)
                if serving is not None else None)
    loop = build_loop(config.feedback, store, data_dir=config.data_dir, deployer=deployer,
                      payload_log=serving.payload_log.server_config()
                      if serving is not None and serving.payload_log else None,
                      progress=progress)
    try:
        if args.promote or args.rollback:
            if deployer is None:
                print("watchloop: no serving: section in the config", file=sys.stderr)
                return 2
            swap = (loop.promote(args.model, args.promote, args.actor, reason=args.reason)
                    if args.promote else loop.rollback(args.model, args.actor,
                                                       reason=args.reason))
            summary = swap.summary()
            ok = swap.outcome in ("promoted", "rolled_back")
            line = f"{swap.model} version {swap.version}: {swap.outcome}"
        else:
            result = loop.retrain(args.model, kind="manual", actor=args.actor,
                                  reason=args.reason, force=args.force)
            summary = result.summary()
            ok = result.outcome in ("promoted", "registered")
            line = (f"{result.model}: {result.outcome}"
                    + (f" version {result.version}" if result.version else ""))
            if result.reason:
                line += f" ({result.reason})"
            stages = ", ".join(f"{k} {v:.1f} s" for k, v in result.stages.items())
            if stages:
                line += f"\n  {stages}"
    finally:
        if deployer is not None:
            deployer.adapter.close()
    print(json.dumps(summary, indent=1, default=str) if args.json else line)
    return 0 if ok else 1


def _lineage(args: argparse.Namespace, lineage: Any) -> int:
    found = lineage.trace(args.model, version=args.version, limit=args.limit)
    if args.json:
        print(json.dumps([{"trigger_id": r.trigger_id, "model": r.model, "version": r.version,
                           "outcome": r.outcome, "steps": r.steps} for r in found],
                         indent=1, default=str))
        return 0
    if not found:
        which = f" version {args.version}" if args.version else ""
        print(f"no retrainings of {args.model}{which} recorded")
        return 0
    for item in found:
        produced = f" -> version {item.version}" if item.version else ""
        print(f"{item.trigger_id}{produced}: {item.outcome}")
        for step in item.steps:
            version = f" v{step['model_version']}" if step.get("model_version") else ""
            reason = f"  {step['reason']}" if step.get("reason") else ""
            print(f"  {step['ts']:%Y-%m-%d %H:%M:%S}  {step['step']:<9}{version:<6} "
                  f"{step['status']:<10} {step['actor']}{reason}")
    return 0
