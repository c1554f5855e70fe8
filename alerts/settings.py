"""The ``alerts:`` section: rules, where their notifications go, and how they are shared.

See ``alerts.rules`` for the rules and ``alerts.routing`` for receivers, the routing tree
and inhibition. Live state, silences, the evaluator's lease and the outbox are in Redis
(``redis_url``), shared by every Watchloop process; the secret of a Redis password belongs
in ``${ENV}``: ``redis://:${REDIS_PASSWORD}@host:6379/0``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from drift.settings import Duration
from telemetry.problems import raise_at, repeated_names

from .routing import InhibitRule, Receiver, Route
from .rules import Rule


class AlertsSettings(BaseModel):
    """The ``alerts:`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[Rule, ...] = ()
    rules_dir: Path | None = None
    redis_url: str = Field("redis://127.0.0.1:6379/0", pattern=r"^(rediss?|unix)://")
    prefix: str = Field("watchloop", pattern=r"^[A-Za-z0-9_.:-]+$")  # of every Redis key
    lease_ttl: Duration = timedelta(seconds=5)  # a standby takes over within this
    console_url: str = "http://127.0.0.1:8501"  # generatorURL of every notification
    env: str = ""  # Datadog's env tag
    receivers: tuple[Receiver, ...] = ()
    route: Route = Route()
    inhibit_rules: tuple[InhibitRule, ...] = ()
    give_up: Duration = timedelta(hours=1)  # a notification undelivered this long: dead
    retry_max: Duration = timedelta(seconds=30)  # the longest wait between two attempts

    @model_validator(mode="after")
    def _consistent(self) -> AlertsSettings:
        problems = repeated_names((("rules", i, "name"), r.name)
                                  for i, r in enumerate(self.rules))
        problems += repeated_names((("receivers", i, "name"), r.name)
                                   for i, r in enumerate(self.receivers))
        names = [r.name for r in self.receivers]
        for path, route in _routes(self.route, ("route",)):
            for receiver in route.receivers:
                if receiver not in names:
                    problems.append(((*path, "receivers"), f"no receiver named {receiver!r}; "
                                     f"receivers: {', '.join(names) or 'none'}", receiver))
        raise_at("AlertsSettings", problems)
        return self


def _routes(route: Route, path: tuple) -> list[tuple[tuple, Route]]:
    found = [(path, route)]
    for i, child in enumerate(route.routes):
        found += _routes(child, (*path, "routes", i))
    return found
