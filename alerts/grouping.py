"""Alertmanager's grouping: alerts with the same ``group_by`` values go out as one message.

A group's buffer lives in Redis with the alerts' state (written in the same fenced step):
the notifications waiting, when the group's first alert came and when it last went out.
``regroup`` adds the tick's notifications to their groups and returns the groups that are
due (``group_wait`` after a group's first alert, then ``group_interval`` apart) as one
notification each, with every alert of the batch under ``alerts``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from telemetry.clock import from_epoch_ms

from .routing import Route

_MS = timedelta(milliseconds=1)


def group_key(receiver: str, route: Route, labels: dict[str, str]) -> str:
    values = {name: labels.get(name, "") for name in route.group_by}
    text = json.dumps([receiver, route.matchers, route.group_by, values], sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def regroup(now_ms: int, buffers: dict[str, dict[str, Any]],
            incoming: list[tuple[dict[str, Any], Route]]
            ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """(group notifications due now, the buffers that changed)."""
    changed: dict[str, dict[str, Any]] = {}
    routes: dict[str, Route] = {}
    for notification, route in incoming:
        key = group_key(notification["receiver"], route, notification["labels"])
        routes[key] = route
        group = changed.get(key) or dict(buffers.get(key) or {
            "receiver": notification["receiver"], "alerts": {}, "first": now_ms,
            "flushed": None,
            "labels": {n: notification["labels"].get(n, "") for n in route.group_by},
            "wait_ms": route.group_wait / _MS, "interval_ms": route.group_interval / _MS})
        group["alerts"] = {**group["alerts"], notification["fingerprint"]: notification}
        changed[key] = group
    ready = []
    for key, group in {**buffers, **changed}.items():
        if not group["alerts"]:
            continue
        due = (now_ms >= group["first"] + group["wait_ms"] if group["flushed"] is None
               else now_ms >= group["flushed"] + group["interval_ms"])
        if not due:
            continue
        ready.append(_message(key, group, now_ms))
        changed[key] = {**group, "alerts": {}, "flushed": now_ms}
    return ready, changed


def _message(key: str, group: dict[str, Any], now_ms: int) -> dict[str, Any]:
    alerts = sorted(group["alerts"].values(), key=lambda n: (n["ends_at"], n["fingerprint"]))
    firing = [n for n in alerts if n["status"] == "firing"]
    first = alerts[0]
    return {
        "key": f"group:{key}:{now_ms}", "receiver": group["receiver"],
        "status": "firing" if firing else first["status"], "fingerprint": key,
        "labels": {**group["labels"]}, "group_labels": group["labels"],
        "annotations": {}, "value": None, "alerts": alerts,
        "starts_at": min(n["starts_at"] for n in alerts),
        "ends_at": max(n["ends_at"] for n in alerts),
        "sent_at": from_epoch_ms(now_ms).isoformat(),
        "generator_url": first.get("generator_url", ""),
    }
