"""The retrain policy, in Redis so that every Watchloop process agrees.

A trigger becomes a run only if, for its model: no run is in flight (a lease, ``SET NX PX``,
renewed by the run while it works, so that a crashed runner frees it when the lease lapses);
the cooldown since the last accepted trigger has passed; today's budget (UTC day) is not
spent; and enough labelled rows arrived since the champion's training cut-off (the caller
counts them in the store). The first three are decided in one Lua script, so two processes
triggering at once start one run. A forced trigger (by a person) skips the cooldown, the
budget and the fresh-label minimum, never the lease.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from telemetry.clock import epoch_ms, utc_now

from .settings import PolicySettings

__all__ = ["Decision", "RetrainPolicy", "RunLease"]

# KEYS: lease, last accepted trigger, today's count.
# ARGV: run id, now (ms), cooldown (ms), budget, lease (ms), force (0/1).
# Returns {accepted, rule, detail}.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder then return {0, 'in_flight', holder} end
local now = tonumber(ARGV[2])
if ARGV[6] == '0' then
  local last = redis.call('GET', KEYS[2])
  if last and now - tonumber(last) < tonumber(ARGV[3]) then
    return {0, 'cooldown', last}
  end
  local used = tonumber(redis.call('GET', KEYS[3]) or '0')
  if used >= tonumber(ARGV[4]) then return {0, 'budget', tostring(used)} end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[5])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], 172800000)
return {1, 'accepted', ''}
"""
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


@dataclass(frozen=True)
class Decision:
    """Whether a trigger may start a run; ``rule`` names what refused it."""

    accepted: bool
    rule: str  # accepted, in_flight, cooldown, budget, fresh_labels
    reason: str
    run_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rule": self.rule, "reason": self.reason,
                "run_id": self.run_id}


class RunLease:
    """A run's hold on its model's slot; renew it while working, release it when done."""

    def __init__(self, redis: Any, key: str, run_id: str, ttl_ms: int) -> None:
        self._redis = redis
        self.key = key
        self.run_id = run_id
        self.ttl_ms = ttl_ms

    def renew(self) -> bool:
        """Extend the lease; False when it lapsed and was taken (the run must give up)."""
        return bool(self._redis.eval(_RENEW, 1, self.key, self.run_id, self.ttl_ms))

    def release(self) -> None:
        self._redis.eval(_RELEASE, 1, self.key, self.run_id)


class RetrainPolicy:
    """Decides triggers against the shared state under ``<prefix>:retrain:<model>:*``."""

    def __init__(self, redis: Any, *, prefix: str = "watchloop",
                 clock: Any = utc_now) -> None:
        self._redis = redis
        self.prefix = prefix
        self.clock = clock

    def _key(self, model: str, name: str) -> str:
        return f"{self.prefix}:retrain:{model}:{name}"

    def acquire(self, model: str, settings: PolicySettings, *, fresh_labels: int | None,
                force: bool = False) -> tuple[Decision, RunLease | None]:
        """Take the model's run slot if the policy allows; the lease is None when refused.
        ``fresh_labels``: labelled rows since the champion's cut-off (None: not counted)."""
        if (not force and fresh_labels is not None
                and fresh_labels < settings.min_fresh_labels):
            return Decision(False, "fresh_labels",
                            f"{fresh_labels} labelled rows since the champion's training "
                            f"cut-off, fewer than {settings.min_fresh_labels}"), None
        now = self.clock()
        run_id = f"{model}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        lease_ms = max(1, int(settings.lease.total_seconds() * 1000))
        cooldown_ms = int(settings.cooldown.total_seconds() * 1000)
        accepted, rule, detail = self._redis.eval(
            _ACQUIRE, 3, self._key(model, "lease"), self._key(model, "last"),
            self._key(model, f"day:{now:%Y%m%d}"), run_id, epoch_ms(now), cooldown_ms,
            settings.daily_budget, lease_ms, int(force))
        rule = _text(rule)
        detail = _text(detail)
        if not accepted:
            return Decision(False, rule, self._explain(rule, detail, settings, now)), None
        lease = RunLease(self._redis, self._key(model, "lease"), run_id, lease_ms)
        return Decision(True, "accepted", "forced" if force else "within policy", run_id), lease

    def in_flight(self, model: str) -> str | None:
        """The run holding the model's slot, if any."""
        holder = self._redis.get(self._key(model, "lease"))
        return _text(holder) if holder else None

    def _explain(self, rule: str, detail: str, settings: PolicySettings,
                 now: datetime) -> str:
        if rule == "in_flight":
            return f"run {detail} is in flight (one run per model)"
        if rule == "cooldown":
            waited = (epoch_ms(now) - int(detail)) / 1000
            left = settings.cooldown.total_seconds() - waited
            return (f"the last run started {waited:.0f} s ago, "
                    f"{settings.cooldown.total_seconds():.0f} s must pass ({left:.0f} s left)")
        return f"daily budget spent: {detail} of {settings.daily_budget} runs today (UTC)"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
