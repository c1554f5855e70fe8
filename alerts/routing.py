"""Where notifications go: receivers, a routing tree by labels, inhibition.

Shape (YAML, under ``alerts:``)::

    receivers:
      - {name: oncall, type: webhook, url: "https://hooks.slack.com/...", secret: ${HOOK_KEY}}
      - {name: am, type: alertmanager, url: "http://alertmanager:9093"}
      - {name: dd, type: datadog, statsd_port: 8125}     # + DD_API_KEY: the events API too
    route:                      # the root: every alert starts here
      receivers: [oncall]
      repeat_interval: 4h       # a firing alert notifies again after this long
      routes:                   # the first child whose matchers all match takes the alert
        - {matchers: ["severity=ticket"], receivers: [dd]}
        - {matchers: ["model=~fraud|trust-safety"], receivers: [am], continue: true}
    inhibit_rules:              # no notification for a target while a source fires
      - {source_matchers: ["severity=page"], target_matchers: ["severity=ticket"],
         equal: [model]}
"""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from drift.settings import Duration, DurationOrZero

from .state import Matcher


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WebhookReceiver(_Settings):
    """Slack-compatible JSON to a URL, signed with HMAC-SHA256 when a secret is set."""

    type: Literal["webhook"]
    name: str = Field(min_length=1)
    url: str = Field(pattern=r"^https?://")
    secret: SecretStr | None = None
    timeout_s: float = Field(5.0, gt=0)


class AlertmanagerReceiver(_Settings):
    """Alertmanager's v2 API (``POST /api/v2/alerts``), for teams that route with it."""

    type: Literal["alertmanager"]
    name: str = Field(min_length=1)
    url: str = Field(pattern=r"^https?://")
    timeout_s: float = Field(5.0, gt=0)
    # a firing alert is re-sent this often (Prometheus re-sends every minute); Alertmanager
    # resolves one it has not heard of for its endsAt, set to four times this
    resend_interval: Duration = timedelta(minutes=1)


class DatadogReceiver(_Settings):
    """Datadog: events and a gauge through DogStatsD, and events through the HTTP API when
    ``DD_API_KEY`` is set (``api_url`` for another site or a proxy)."""

    type: Literal["datadog"]
    name: str = Field(min_length=1)
    statsd_host: str = "127.0.0.1"
    statsd_port: int = Field(8125, ge=1, le=65535)
    api_url: str | None = Field(None, pattern=r"^https?://")
    timeout_s: float = Field(5.0, gt=0)


class RetrainReceiver(_Settings):
    """The feedback loop: a firing alert with a ``model`` label triggers its retraining,
    under the retrain policy (the ``feedback:`` section)."""

    type: Literal["retrain"]
    name: str = Field(min_length=1)


Receiver = Annotated[WebhookReceiver | AlertmanagerReceiver | DatadogReceiver | RetrainReceiver,
                     Field(discriminator="type")]


class Route(_Settings):
    """A node of the routing tree."""

    matchers: tuple[str, ...] = ()
    receivers: tuple[str, ...] = ()
    continue_: bool = Field(False, alias="continue")
    repeat_interval: Duration = timedelta(hours=4)
    # Alertmanager's grouping: alerts with the same values of group_by go out together, the
    # first batch group_wait after the group's first alert, later ones group_interval apart.
    # No group_by: each alert notifies on its own, at once.
    group_by: tuple[str, ...] = ()
    group_wait: DurationOrZero = timedelta(seconds=30)
    group_interval: DurationOrZero = timedelta(minutes=5)
    routes: tuple[Route, ...] = ()

    @field_validator("matchers")
    @classmethod
    def _parse(cls, matchers: tuple[str, ...]) -> tuple[str, ...]:
        for text in matchers:
            Matcher.parse(text)
        return matchers

    @cached_property
    def _matchers(self) -> tuple[Matcher, ...]:
        return tuple(Matcher.parse(m) for m in self.matchers)

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self._matchers)

    def receivers_for(self, labels: dict[str, str]) -> list[tuple[str, Route]]:
        """(receiver, the route that sends to it) for an alert's labels, as Alertmanager
        walks its tree: the deepest matching routes, the first match at each level unless it
        ``continue``s; a node with no matching child sends to its own receivers."""
        found: list[tuple[str, Route]] = []
        for child in self.routes:
            if child.matches(labels):
                found += child.receivers_for(labels)
                if not child.continue_:
                    break
        if not found:
            found = [(r, self) for r in self.receivers]
        return found


class InhibitRule(_Settings):
    """While an alert matching ``source_matchers`` fires, alerts matching
    ``target_matchers`` with the same values of ``equal`` labels notify no one."""

    source_matchers: tuple[str, ...]
    target_matchers: tuple[str, ...]
    equal: tuple[str, ...] = ()

    @field_validator("source_matchers", "target_matchers")
    @classmethod
    def _parse(cls, matchers: tuple[str, ...]) -> tuple[str, ...]:
        for text in matchers:
            Matcher.parse(text)
        return matchers

    @cached_property
    def _parsed(self) -> tuple[tuple[Matcher, ...], tuple[Matcher, ...]]:
        return (tuple(Matcher.parse(m) for m in self.source_matchers),
                tuple(Matcher.parse(m) for m in self.target_matchers))

    def inhibits(self, target: dict[str, str], firing: list[dict[str, str]]) -> bool:
        sources, targets = self._parsed
        if not all(m.matches(target) for m in targets):
            return False
        for source in firing:
            if source is target or source == target:
                continue
            if all(m.matches(source) for m in sources) and all(
                    source.get(name, "") == target.get(name, "") for name in self.equal):
                return True
        return False
