"""The live evaluator: one elected process evaluates every rule, all deliver notifications.

Each tick (every second), the process holding the lease (``alerts.state.Lease``) evaluates
the rules that are due at their interval, with the same samples query and lifecycle as a
backtest (``alerts.series``, ``alerts.lifecycle``). Transitions that notify are routed
(``alerts.routing``), unless a silence or an inhibition rule holds them back (a resolution
goes wherever its firing went), and written
with the alerts' state to Redis in one fenced step; every transition is also recorded in
``alert_events`` with the value that caused it. Firing alerts notify their receivers again
after the route's ``repeat_interval``. Every process runs the outbox's delivery.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from telemetry import Store, StoreError
from telemetry.clock import Clock, epoch_ms, utc_now

from .evaluate import alert_labels, fingerprint, rule_samples
from .grouping import regroup
from .lifecycle import ERROR, AlertState, Transition, advance
from .outbox import Outbox
from .routing import AlertmanagerReceiver, Route
from .rules import Rule
from .settings import AlertsSettings
from .sinks import RetrainTrigger, Sink
from .state import AlertStore, FencedOut, Lease

log = logging.getLogger("watchloop.alerts")

#: The columns of an ``alert_events`` row, as the evaluator and the API write them.
EVENT_COLUMNS = ("ts", "ingest_time", "fingerprint", "rule", "severity", "state", "model",
                  "model_version", "value", "summary", "labels", "actor")


class AlertEvaluator:
    """A shell component: the evaluation loop (when leading) and the delivery loop."""

    name = "alerts"

    def __init__(self, settings: AlertsSettings, store: Store, redis: Any,
                 sinks: Mapping[str, Sink], *, clock: Clock = utc_now,
                 holder: str | None = None) -> None:
        self.settings = settings
        self._store = store
        self._clock = clock
        holder = holder or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease = Lease(redis, prefix=settings.prefix,
                           ttl_s=settings.lease_ttl.total_seconds(), holder=holder)
        self.alerts = AlertStore(redis, prefix=settings.prefix)
        self.outbox = Outbox(redis, sinks, consumer=holder, prefix=settings.prefix,
                             give_up=settings.give_up, backoff_max=settings.retry_max,
                             backoff_initial=min(timedelta(seconds=1), settings.retry_max),
                             clock=clock)
        self._due: dict[str, datetime] = {}
        self._buffers: dict[str, dict[str, Any]] = {}
        self._began: dict[str, datetime | None] = {}  # the state a transition left, since
        self._alertmanagers = {r.name: r.resend_interval for r in settings.receivers
                               if isinstance(r, AlertmanagerReceiver)}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle of the component ------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        for target, name in ((self._evaluate_loop, "watchloop-alerts"),
                             (self._deliver_loop, "watchloop-alert-delivery")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []
        self.lease.release()

    def _evaluate_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick(self._clock())
            except Exception:  # the loop must outlive any failed tick
                log.exception("alerts: evaluation failed")
            # until the next rule is due, at most a second (to renew the lease in time)
            due = min(self._due.values(), default=None)
            wait = 1.0 if due is None else (due - self._clock()).total_seconds()
            self._stop.wait(min(1.0, max(0.02, wait), self.lease.ttl_ms / 3000))

    def _deliver_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.outbox.deliver(block_ms=200)
            except Exception:
                log.exception("alerts: delivery failed")
                self._stop.wait(1.0)

    # -- one tick ------------------------------------------------------------------------

    def tick(self, now: datetime) -> list[tuple[str, Transition]]:
        """Evaluate the rules due at ``now`` if this process leads; return the transitions."""
        if not self.lease.hold():
            self._due.clear()  # a standby evaluates everything at once when it takes over
            return []
        known = self.alerts.alerts()
        changed: dict[str, tuple[AlertState, dict[str, str]]] = {}
        transitions: list[tuple[str, Transition, Rule, dict[str, str]]] = []
        for rule in self.settings.rules:
            if self._due.get(rule.name, now) > now:
                continue
            self._due[rule.name] = now + rule.interval
            for fp, labels, value in self._observe(rule, now, known):
                before, _ = known.get(fp, (AlertState(), labels))
                after, change = advance(rule, before, now, value)
                if after != before:
                    changed[fp] = (after, labels)
                if change is not None:
                    transitions.append((fp, change, rule, labels))
                    self._began[fp] = before.since if change.state != "firing" else now
        current = {fp: (state, labels) for fp, (state, labels) in known.items()}
        current.update(changed)
        notifications, marks = self._notifications(now, transitions, current)
        try:
            self.alerts.save(self.lease, changed, notifications, marks, self._buffers)
        except FencedOut:
            log.warning("alerts: another process took over evaluation; this tick is dropped")
            self.lease.token = None
            return []
        self._record(now, transitions)
        return [(fp, change) for fp, change, _, _ in transitions]

    def _observe(self, rule: Rule, now: datetime, known: dict[str, tuple[AlertState, dict]]
                 ) -> Iterator[tuple[str, dict[str, str], float | str | None]]:
        """(fingerprint, labels, value) of each of the rule's alerts at ``now``: the series
        found, and the known alerts of the rule that were not (no data for a stored series,
        0 for a query rule's group that has no requests)."""
        mine = {fp: labels for fp, (_, labels) in known.items()
                if labels.get("alertname") == rule.name}
        try:
            samples = rule_samples(self._store, rule, [now])
        except (StoreError, ValueError) as exc:
            log.error("alerts: evaluating %s failed: %s", rule.name, exc)
            for fp, labels in mine.items():
                yield fp, labels, ERROR
            return
        for series, (value,) in samples.items():
            fp = fingerprint(rule, series)
            mine.pop(fp, None)
            yield fp, alert_labels(rule, series), value
        # a query rule's group without requests in the window counts 0 (an average: nothing)
        missing = 0.0 if rule.query is not None and not rule.query.aggregate.startswith(
            "avg(") else None
        for fp, labels in mine.items():
            yield fp, labels, missing

    def _notifications(self, now: datetime,
                       transitions: list[tuple[str, Transition, Rule, dict[str, str]]],
                       current: dict[str, tuple[AlertState, dict[str, str]]],
                       ) -> tuple[list[dict], dict[str, int]]:
        """The notifications of the tick's transitions and repeats, each alone or, for a
        route with ``group_by``, in its group's batch once due; and the marks of when each
        alert last notified each receiver."""
        firing = [labels for state, labels in current.values() if state.state == "firing"]
        silences = self.alerts.silences()
        rules = {r.name: r for r in self.settings.rules}
        out: list[tuple[dict, Route]] = []
        marks: dict[str, int] = {}

        def held(labels: dict[str, str]) -> bool:
            if any(s.silences(labels, now) for s in silences):
                return True
            return any(r.inhibits(labels, firing) for r in self.settings.inhibit_rules)

        notified = self.alerts.notified()
        for fp, change, rule, labels in transitions:
            if not change.notifies:
                continue
            state = current[fp][0]
            for receiver, route in self.settings.route.receivers_for(labels):
                mark = f"{fp}|{receiver}"
                if change.state == "resolved":
                    # resolved goes where the firing went, held back or not since
                    if not notified.get(mark):
                        continue
                    marks[mark] = 0
                elif held(labels):
                    continue
                else:  # what fired (or lost its data) here, resolves here
                    marks[mark] = epoch_ms(now)
                out.append((self._notification(now, fp, change.state, change.at, rule,
                                               labels, change.value, receiver, state), route))
        acks = self.alerts.acknowledgements()
        for fp, (state, labels) in current.items():  # repeat_interval for firing alerts
            rule = rules.get(labels.get("alertname", ""))
            if rule is None or state.state != "firing" or held(labels):
                continue
            ack = acks.get(fp)
            if ack and state.since is not None and ack["at"] >= epoch_ms(state.since):
                continue  # acknowledged since it fired: someone is on it
            for receiver, route in self.settings.route.receivers_for(labels):
                last = notified.get(f"{fp}|{receiver}")
                mark = f"{fp}|{receiver}"
                # never notified (held back by a silence or an inhibition since): now;
                # Alertmanager receivers are re-sent often, or Alertmanager resolves it
                every = route.repeat_interval
                if receiver in self._alertmanagers:
                    every = min(every, self._alertmanagers[receiver])
                if mark in marks or (last and epoch_ms(now) - last < every / _MS):
                    continue
                out.append((self._notification(now, fp, "firing", now, rule, labels,
                                               state.value, receiver, state), route))
                marks[mark] = epoch_ms(now)
        direct = [n for n, route in out if not route.group_by]
        ready, buffers = regroup(epoch_ms(now), self.alerts.groups(),
                                 [(n, route) for n, route in out if route.group_by])
        self._buffers = buffers
        return direct + ready, marks

    def _notification(self, now: datetime, fp: str, status: str, at: datetime, rule: Rule,
                      labels: dict[str, str], value: float | None, receiver: str,
                      state: AlertState) -> dict[str, Any]:
        began = self._began.get(fp) if status != "firing" else state.since
        started = began or at
        return {
            "key": f"{fp}:{epoch_ms(at)}:{status}:{receiver}",
            "receiver": receiver, "status": status, "fingerprint": fp, "labels": labels,
            "annotations": dict(rule.annotations), "value": value,
            "starts_at": started.isoformat(), "ends_at": at.isoformat(),
            "sent_at": now.isoformat(),
            "generator_url": f"{self.settings.console_url.rstrip('/')}/alerts?alert={fp}",
        }

    def _record(self, now: datetime, transitions: list[tuple[str, Transition, Rule, dict]]
                ) -> None:
        if not transitions:
            return
        rows = [[change.at, now, fp, rule.name, rule.severity, change.state,
                 labels.get("model", ""), labels.get("version", ""), change.value,
                 rule.annotations.get("summary", ""), labels, f"evaluator:{self.lease.holder}"]
                for fp, change, rule, labels in transitions]
        try:
            self._store.insert("alert_events", rows, EVENT_COLUMNS)
        except StoreError as exc:  # the state in Redis is what counts; the history can lag
            log.error("alerts: recording %d transitions failed: %s", len(rows), exc)


_MS = timedelta(milliseconds=1)


class AlertsCollector(Collector):
    """``watchloop_alerts{alertname, alertstate, severity, model, version}``: 1 per alert
    that is pending, firing, without data or in error, as Prometheus' ``ALERTS`` series."""

    def __init__(self, alerts: AlertStore) -> None:
        self._alerts = alerts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "watchloop_alerts", "Alerts that are not inactive, as Prometheus' ALERTS",
            labels=["alertname", "alertstate", "severity", "model", "version"])
        try:
            known = self._alerts.alerts()
        except Exception as exc:  # noqa: BLE001 - a scrape must not fail on Redis
            log.warning("alerts: state unavailable for /metrics: %s", exc)
            known = {}
        for state, labels in known.values():
            if state.state != "inactive":
                family.add_metric([labels.get("alertname", ""), state.state,
                                   labels.get("severity", ""), labels.get("model", ""),
                                   labels.get("version", "")], 1.0)
        yield family


def build_evaluator(settings: AlertsSettings, store: Store, *,
                    redis_factory: Callable[[str], Any] | None = None,
                    retrain: RetrainTrigger | None = None) -> AlertEvaluator:
    """The evaluator with a sink per configured receiver; ``retrain`` is the feedback
    loop's trigger, which ``retrain`` receivers hand firing alerts to."""
    from telemetry.extras import require

    from .sinks import build_sink

    factory = redis_factory or (lambda url: require("redis", "alerting").Redis.from_url(url))
    sinks = {r.name: build_sink(r, env=settings.env, retrain=retrain)
             for r in settings.receivers}
    return AlertEvaluator(settings, store, factory(settings.redis_url), sinks)
