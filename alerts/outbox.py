"""The durable outbox: every notification is delivered once, through outages and restarts.

The evaluator appends notifications to a Redis stream in the same atomic step as the alert
state that caused them (``AlertStore.save``), so a notification is never lost between the
two. ``Outbox.deliver`` reads the stream as a consumer group: each entry is sent to its
receiver and acknowledged (``XACK``) only once the receiver took it, its idempotency key is
remembered (a ``delivered`` set) before the acknowledgement, so an entry read again after a
crash is acknowledged without being sent twice. A failed send is retried with exponential
backoff; after ``give_up`` it goes to a dead-letter stream with the last error. Entries a
dead process was delivering are claimed by another after ``claim_idle``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from telemetry.clock import Clock, epoch_ms, utc_now

from .sinks import DeliveryError, Sink

log = logging.getLogger("watchloop.alerts")

GROUP = "delivery"
# Entries per read: few enough that a pass ends well within claim_idle, so no other
# process claims an entry this one is about to send.
_BATCH = 20


class Outbox:
    """Delivers what the evaluator enqueued (see module docs)."""

    def __init__(self, redis: Any, sinks: Mapping[str, Sink], *, consumer: str,
                 prefix: str = "watchloop", backoff_initial: timedelta = timedelta(seconds=1),
                 backoff_max: timedelta = timedelta(seconds=30),
                 give_up: timedelta = timedelta(hours=1),
                 claim_idle: timedelta = timedelta(seconds=10), clock: Clock = utc_now) -> None:
        self._redis = redis
        self._sinks = dict(sinks)
        self._consumer = consumer
        self.stream = f"{prefix}:alerts:outbox"
        self.dead = f"{prefix}:alerts:outbox:dead"
        self._delivered = f"{prefix}:alerts:delivered"
        self._attempts = f"{prefix}:alerts:attempts"
        self._backoff = (backoff_initial, backoff_max)
        self._give_up = give_up
        self._claim_idle_ms = int(claim_idle.total_seconds() * 1000)
        self._clock = clock
        self._grouped = False

    def deliver(self, block_ms: int = 100) -> int:
        """One pass: retry what is due, claim a dead consumer's entries, send new ones.
        Returns how many were delivered."""
        self._ensure_group()
        entries = list(self._read("0", None))  # this consumer's pending ones: retries
        _, claimed, *_ = self._redis.xautoclaim(self.stream, GROUP, self._consumer,
                                                self._claim_idle_ms, "0-0", count=_BATCH)
        entries += [(i, f) for i, f in claimed if f]
        # new entries on every pass: one receiver backing off never holds back the others;
        # block for them only when nothing is waiting to be retried
        entries += self._read(">", None if entries else block_ms)
        # in stream order per receiver: a receiver whose earlier notification is waiting
        # gets none of its later ones before it (a resolution never overtakes its firing)
        waiting: set[str] = set()
        delivered = 0
        for entry_id, fields in sorted(entries, key=lambda e: _order(e[0])):
            raw = fields.get(b"n", fields.get("n"))
            notification = json.loads(raw)
            if notification["receiver"] in waiting:
                continue
            outcome = self._deliver_one(entry_id, raw, notification)
            if outcome == "sent":
                delivered += 1
            elif outcome == "waiting":
                waiting.add(notification["receiver"])
        if entries and not delivered and block_ms:
            time.sleep(block_ms / 1000)  # only retries not yet due: do not spin
        return delivered

    def pending(self) -> int:
        """Entries not yet delivered (or given up)."""
        self._ensure_group()
        return int(self._redis.xpending(self.stream, GROUP)["pending"]) + self._lag()

    def _lag(self) -> int:
        for group in self._redis.xinfo_groups(self.stream):
            name = group["name"]
            if (name.decode() if isinstance(name, bytes) else name) == GROUP:
                return int(group.get("lag") or 0)
        return 0

    def _ensure_group(self) -> None:
        if self._grouped:
            return
        try:
            self._redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except Exception as exc:  # noqa: BLE001 - BUSYGROUP: another process made it
            if "BUSYGROUP" not in str(exc):
                raise
        self._grouped = True

    def _read(self, cursor: str, block_ms: int | None) -> list[tuple[Any, dict]]:
        found = self._redis.xreadgroup(GROUP, self._consumer, {self.stream: cursor},
                                       count=_BATCH, block=block_ms or None)  # 0: forever
        out = []
        for _, entries in found or []:
            out += [(i, f) for i, f in entries if f]
        return out

    def _deliver_one(self, entry_id: Any, raw: Any, notification: dict) -> str:
        """``sent``; ``waiting`` for a retry; or ``done`` without sending (sent before a
        crash, or given up)."""
        key = notification["key"]
        if self._redis.sismember(self._delivered, key):  # sent before a crash: done
            self._redis.xack(self.stream, GROUP, entry_id)
            return "done"
        now_ms = epoch_ms(self._clock())
        attempts = json.loads(self._redis.hget(self._attempts, key) or "null") or {
            "n": 0, "first": now_ms, "next": now_ms}
        if attempts["next"] > now_ms:
            return "waiting"
        sink = self._sinks.get(notification["receiver"])
        try:
            if sink is None:
                raise DeliveryError(f"no receiver named {notification['receiver']!r}",
                                    retry=False)
            try:
                sink.send(notification)
            except DeliveryError:
                raise
            except Exception as exc:  # a sink's bug must not stall the outbox: retried
                log.exception("alerts: the %s sink failed", notification["receiver"])
                raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        except DeliveryError as exc:
            attempts["n"] += 1
            waited = timedelta(milliseconds=now_ms - attempts["first"])
            if not exc.retry or waited >= self._give_up:
                self._redis.xadd(self.dead, {"n": raw, "error": str(exc),
                                             "attempts": attempts["n"]})
                self._redis.xack(self.stream, GROUP, entry_id)
                self._redis.hdel(self._attempts, key)
                log.error("alerts: gave up on %s to %s after %d attempts: %s", key,
                          notification["receiver"], attempts["n"], exc)
                return "done"
            delay = min(self._backoff[0] * 2 ** (attempts["n"] - 1), self._backoff[1])
            attempts["next"] = now_ms + int(delay.total_seconds() * 1000)
            self._redis.hset(self._attempts, key, json.dumps(attempts))
            if attempts["n"] == 1:
                log.warning("alerts: delivering to %s failed (retrying with backoff): %s",
                            notification["receiver"], exc)
            return "waiting"
        self._redis.sadd(self._delivered, key)
        self._redis.xack(self.stream, GROUP, entry_id)
        self._redis.hdel(self._attempts, key)
        return "sent"


def _order(entry_id: Any) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)

