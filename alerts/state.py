"""Alert state shared by every Watchloop process, in Redis: live alerts, silences, the lease.

* **The lease** elects the one evaluator: ``SET key holder NX PX ttl``, renewed by its holder
  (a Lua check-and-extend), taken over by a standby once it lapses. Every acquisition takes
  a new **fencing token** (``INCR``); each write of alert state or of the outbox runs in a
  Lua script that refuses it unless the writer's token is still the current one, so a leader
  that stalled past its lease and wakes up cannot write over its successor.
* **Alerts**: one hash field per fingerprint, the lifecycle state as JSON.
* **Silences**: matchers, start and end, author and comment; an alert whose labels match
  every matcher of an active silence notifies no one.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from telemetry.clock import epoch_ms, from_epoch_ms, utc_now

from .lifecycle import AlertState

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# One atomic write: the state of the alerts and the notifications their transitions send,
# or nothing when the writer's token is no longer the current one. KEYS[1] the token key,
# KEYS[2] the outbox stream; ARGV[1] the token, ARGV[2] how many (hash, field, value)
# triples follow; then the triples, then the notifications (JSON).
_FENCED_SAVE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local triples = tonumber(ARGV[2])
for i = 0, triples - 1 do
  redis.call('HSET', ARGV[3 + 3 * i], ARGV[4 + 3 * i], ARGV[5 + 3 * i])
end
for i = 3 + 3 * triples, #ARGV do redis.call('XADD', KEYS[2], '*', 'n', ARGV[i]) end
return 1
"""


class FencedOut(RuntimeError):
    """This process's lease was taken over: it must stop writing."""


class Lease:
    """Leader election with a fencing token (see module docs)."""

    def __init__(self, redis: Any, *, prefix: str = "watchloop", ttl_s: float = 5.0,
                 holder: str | None = None) -> None:
        self._redis = redis
        self.key = f"{prefix}:alerts:leader"
        self.token_key = f"{prefix}:alerts:token"
        self.ttl_ms = int(ttl_s * 1000)
        self.holder = holder or uuid.uuid4().hex
        self.token: int | None = None

    def hold(self) -> bool:
        """Keep or take the lease; True while this process is the leader."""
        if self.token is not None and self._redis.eval(_RENEW, 1, self.key, self.holder,
                                                       self.ttl_ms):
            return True
        if self._redis.set(self.key, self.holder, nx=True, px=self.ttl_ms):
            self.token = int(self._redis.incr(self.token_key))
            return True
        self.token = None
        return False

    def release(self) -> None:
        """Give the lease up, if still ours (compare and delete, in one step)."""
        if self.token is not None:
            self._redis.eval(_RELEASE, 1, self.key, self.holder)
        self.token = None


@dataclass(frozen=True)
class Matcher:
    """``name`` equals (``=``), differs (``!=``), matches (``=~``) or not (``!~``) ``value``."""

    name: str
    value: str
    op: str = "="

    def matches(self, labels: dict[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        found = re.fullmatch(self.value, got) is not None
        return found if self.op == "=~" else not found

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """``severity=page``, ``model!=recs``, ``model=~fraud|trust``."""
        found = re.fullmatch(r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*", text)
        if not found:
            raise ValueError(f"not a matcher: {text!r} (write name=value, name!=value, "
                             "name=~regex or name!~regex)")
        name, op, value = found.groups()
        value = value.strip("\"'")
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{text!r}: not a regular expression: {exc}") from None
        return cls(name, value, op)


@dataclass(frozen=True)
class Silence:
    """No notification for alerts matching every matcher, from ``starts`` to ``ends``."""

    matchers: tuple[Matcher, ...]
    starts: datetime
    ends: datetime
    author: str
    comment: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def silences(self, labels: dict[str, str], at: datetime) -> bool:
        return self.starts <= at < self.ends and all(m.matches(labels) for m in self.matchers)


class AlertStore:
    """Live alerts, silences and the outbox in Redis, writes fenced by a ``Lease``."""

    def __init__(self, redis: Any, *, prefix: str = "watchloop") -> None:
        self._redis = redis
        self.prefix = prefix
        self.alerts_key = f"{prefix}:alerts:state"
        self.labels_key = f"{prefix}:alerts:labels"
        self.silences_key = f"{prefix}:alerts:silences"
        self.outbox_key = f"{prefix}:alerts:outbox"
        self.notified_key = f"{prefix}:alerts:notified"
        self.acks_key = f"{prefix}:alerts:acks"
        self.groups_key = f"{prefix}:alerts:groups"

    # -- alerts --------------------------------------------------------------------------

    def alerts(self) -> dict[str, tuple[AlertState, dict[str, str]]]:
        """Every alert known: fingerprint → (state, labels)."""
        states = self._redis.hgetall(self.alerts_key)
        labels = self._redis.hgetall(self.labels_key)
        out = {}
        for fp, raw in states.items():
            key = fp.decode() if isinstance(fp, bytes) else fp
            found = labels.get(fp) or labels.get(key) or "{}"
            out[key] = (_state(json.loads(raw)), json.loads(found))
        return out

    def save(self, lease: Lease, changed: dict[str, tuple[AlertState, dict[str, str]]],
             notifications: list[dict], marks: dict[str, int] | None = None,
             groups: dict[str, dict[str, Any]] | None = None) -> None:
        """Write changed alerts, enqueue their notifications and record when each alert last
        notified each receiver (``marks``), in one step, if ``lease`` still leads."""
        if lease.token is None:
            raise FencedOut("not the leader")
        if not changed and not notifications and not marks and not groups:
            return
        triples: list[Any] = []
        for fp, (state, labels) in changed.items():
            triples += [self.alerts_key, fp, json.dumps(_plain(state))]
            triples += [self.labels_key, fp, json.dumps(labels, sort_keys=True)]
        for name, ms in (marks or {}).items():
            triples += [self.notified_key, name, str(ms)]
        for key, group in (groups or {}).items():
            triples += [self.groups_key, key, json.dumps(group, sort_keys=True)]
        entries = [json.dumps(n, sort_keys=True) for n in notifications]
        if not self._redis.eval(_FENCED_SAVE, 2, lease.token_key, self.outbox_key,
                                lease.token, len(triples) // 3, *triples, *entries):
            raise FencedOut("a newer leader holds the lease")

    def notified(self) -> dict[str, int]:
        """When each (fingerprint, receiver) was last notified of a firing (epoch ms)."""
        return {(k.decode() if isinstance(k, bytes) else k): int(v)
                for k, v in self._redis.hgetall(self.notified_key).items()}

    def groups(self) -> dict[str, dict[str, Any]]:
        """The buffers of grouped notifications (``alerts.grouping``)."""
        return {(k.decode() if isinstance(k, bytes) else k): json.loads(v)
                for k, v in self._redis.hgetall(self.groups_key).items()}

    # -- acknowledgements ----------------------------------------------------------------

    def acknowledge(self, fingerprint: str, who: str, comment: str = "",
                    at: datetime | None = None) -> None:
        """Someone is on it: the alert stops repeating until it resolves (or fires anew)."""
        self._redis.hset(self.acks_key, fingerprint, json.dumps(
            {"who": who, "comment": comment, "at": epoch_ms(at or utc_now())}))

    def acknowledgements(self) -> dict[str, dict[str, Any]]:
        return {(k.decode() if isinstance(k, bytes) else k): json.loads(v)
                for k, v in self._redis.hgetall(self.acks_key).items()}

    # -- silences ------------------------------------------------------------------------

    def add_silence(self, silence: Silence) -> str:
        payload = {"matchers": [asdict(m) for m in silence.matchers],
                   "starts": epoch_ms(silence.starts), "ends": epoch_ms(silence.ends),
                   "author": silence.author, "comment": silence.comment}
        self._redis.hset(self.silences_key, silence.id, json.dumps(payload))
        return silence.id

    def expire_silence(self, silence_id: str, at: datetime | None = None) -> bool:
        """End a silence now (it stays listed, as expired)."""
        raw = self._redis.hget(self.silences_key, silence_id)
        if raw is None:
            return False
        payload = json.loads(raw)
        payload["ends"] = min(payload["ends"], epoch_ms(at or utc_now()))
        self._redis.hset(self.silences_key, silence_id, json.dumps(payload))
        return True

    def silences(self) -> list[Silence]:
        out = []
        for sid, raw in self._redis.hgetall(self.silences_key).items():
            p = json.loads(raw)
            out.append(Silence(tuple(Matcher(**m) for m in p["matchers"]),
                               from_epoch_ms(p["starts"]), from_epoch_ms(p["ends"]),
                               p["author"], p["comment"],
                               sid.decode() if isinstance(sid, bytes) else sid))
        return sorted(out, key=lambda s: s.starts)


def _plain(state: AlertState) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in asdict(state).items():
        out[key] = epoch_ms(value) if isinstance(value, datetime) else value
    return out


def _state(raw: dict[str, Any]) -> AlertState:
    times = ("since", "breach_since", "cleared_since")
    return AlertState(**{k: (from_epoch_ms(v) if k in times and v is not None else v)
                         for k, v in raw.items()})
