"""Deliver one notification to a receiver: a webhook, Alertmanager, Datadog, the retrain trigger.

A notification is a dict (see ``alerts.evaluator``): ``key`` (its idempotency key),
``status`` (firing, resolved, nodata, error), ``fingerprint``, ``labels``, ``annotations``,
``value``, ``starts_at``/``ends_at`` (ISO 8601) and ``generator_url`` (the console's page of
the alert). Each sink raises ``DeliveryError`` when the receiver did not take it; the outbox
retries it later. Every request carries the idempotency key so a receiver can drop a
repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import requests

from telemetry.boundary import classify
from telemetry.errors import WatchloopError
from telemetry.extras import require

from .routing import AlertmanagerReceiver, DatadogReceiver, RetrainReceiver, WebhookReceiver

_COLORS = {"firing": "#d62728", "resolved": "#2ca02c", "nodata": "#7f7f7f", "error": "#ff7f0e"}


class DeliveryError(WatchloopError):
    """A receiver did not take a notification; ``retry`` says whether trying later may help."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


class Sink(Protocol):
    name: str

    def send(self, notification: dict[str, Any]) -> None:
        """Deliver, or raise ``DeliveryError``."""


class RetrainTrigger(Protocol):
    """What the feedback loop implements: start retraining a model because of an alert."""

    def trigger(self, model: str, reason: str, *, alert: dict[str, Any]) -> None: ...


def _post(session: requests.Session, url: str, body: bytes, headers: dict[str, str],
          timeout_s: float, what: str) -> None:
    try:
        response = session.post(url, data=body, timeout=timeout_s,
                                headers={"Content-Type": "application/json", **headers})
    except requests.RequestException as exc:
        raise DeliveryError(f"{what} at {url}: {classify(exc) or 'failed'}: {exc}") from exc
    if response.status_code >= 300:
        # 4xx other than 408/429 will not get better by retrying
        retry = response.status_code >= 500 or response.status_code in (408, 429)
        raise DeliveryError(f"{what} at {url}: HTTP {response.status_code} "
                            f"{response.text[:200]}", retry=retry)


class WebhookSink:
    """Slack-compatible JSON (``text`` and an attachment), with the notification itself under
    ``watchloop``; ``X-Watchloop-Signature: sha256=<hex>`` is the HMAC of the body."""

    def __init__(self, settings: WebhookReceiver, session: requests.Session | None = None):
        self.name = settings.name
        self._settings = settings
        self._session = session or requests.Session()

    def send(self, notification: dict[str, Any]) -> None:
        body = json.dumps(slack_message(notification), sort_keys=True).encode()
        headers = {"X-Watchloop-Idempotency-Key": notification["key"]}
        if self._settings.secret is not None:
            digest = hmac.new(self._settings.secret.get_secret_value().encode(), body,
                              hashlib.sha256).hexdigest()
            headers["X-Watchloop-Signature"] = f"sha256={digest}"
        _post(self._session, self._settings.url, body, headers, self._settings.timeout_s,
              "webhook")


def slack_message(n: dict[str, Any]) -> dict[str, Any]:
    if "alerts" in n:  # a group: one line, then an attachment per alert
        alerts = [slack_message(a) for a in n["alerts"]]
        names = ", ".join(f"{k}={v}" for k, v in sorted(n["group_labels"].items()))
        return {"text": f"[{n['status'].upper()}:{len(alerts)}] {names}",
                "attachments": [a["attachments"][0] for a in alerts], "watchloop": n}
    labels = n["labels"]
    title = f"[{n['status'].upper()}] {labels.get('alertname', '?')}"
    summary = n["annotations"].get("summary", "")
    fields = [{"title": k, "value": v, "short": True} for k, v in sorted(labels.items())
              if k != "alertname"]
    runbook = n["annotations"].get("runbook_url")
    text = f"{title}: {summary}" if summary else title
    return {
        "text": text,
        "attachments": [{"color": _COLORS.get(n["status"], "#7f7f7f"), "title": title,
                         "title_link": n.get("generator_url"), "text": summary,
                         "fields": fields + ([{"title": "runbook", "value": runbook}]
                                             if runbook else [])}],
        "watchloop": n,
    }


class AlertmanagerSink:
    """``POST /api/v2/alerts``: a firing alert with ``startsAt``, a resolved one with
    ``endsAt``, ``generatorURL`` pointing at the console."""

    def __init__(self, settings: AlertmanagerReceiver, session: requests.Session | None = None):
        self.name = settings.name
        self._settings = settings
        self._session = session or requests.Session()
        self._ttl = 4 * settings.resend_interval

    def send(self, notification: dict[str, Any]) -> None:
        alerts = [self._alert(n) for n in notification.get("alerts", [notification])]
        _post(self._session, self._settings.url.rstrip("/") + "/api/v2/alerts",
              json.dumps(alerts).encode(),
              {"X-Watchloop-Idempotency-Key": notification["key"]},
              self._settings.timeout_s, "Alertmanager")

    def _alert(self, n: dict[str, Any]) -> dict[str, Any]:
        alert: dict[str, Any] = {
            "labels": n["labels"], "annotations": n["annotations"],
            "startsAt": n["starts_at"], "generatorURL": n.get("generator_url") or "",
        }
        if n["status"] == "resolved":
            alert["endsAt"] = n["ends_at"]
        else:  # Alertmanager resolves an alert not re-sent within endsAt by itself
            ends = datetime.fromisoformat(n["sent_at"]) + self._ttl
            alert["endsAt"] = ends.isoformat()
        return alert


class DatadogSink:
    """A DogStatsD event and the ``watchloop.alert.firing`` gauge (1 firing, 0 not), tagged
    ``alertname``, ``rule``, ``severity``, ``model``, ``version``, ``env``; and, with
    ``DD_API_KEY`` in the environment, the same event through ``POST /api/v1/events``."""

    def __init__(self, settings: DatadogReceiver, *, env: str = "",
                 api_key: str | None = None, session: requests.Session | None = None):
        self.name = settings.name
        self._settings = settings
        self._env = env
        self._api_key = api_key if api_key is not None else os.environ.get("DD_API_KEY")
        self._session = session or requests.Session()
        datadog = require("datadog", "the Datadog receiver")
        self._statsd = datadog.DogStatsd(host=settings.statsd_host, port=settings.statsd_port,
                                         disable_telemetry=True)

    def tags(self, n: dict[str, Any]) -> list[str]:
        labels = n["labels"]
        tags = {"alertname": labels.get("alertname", ""), "rule": labels.get("alertname", ""),
                "severity": labels.get("severity", ""), "model": labels.get("model", ""),
                "version": labels.get("version", ""), "env": self._env}
        return [f"{k}:{v}" for k, v in tags.items() if v]

    def send(self, notification: dict[str, Any]) -> None:
        for n in notification.get("alerts", [notification]):
            self._send_one(n)

    def _send_one(self, n: dict[str, Any]) -> None:
        tags = self.tags(n)
        title = f"[{n['status']}] {n['labels'].get('alertname', '')}"
        text = n["annotations"].get("summary", "") or title
        alert_type = {"firing": "error", "resolved": "success"}.get(n["status"], "warning")
        try:
            self._statsd.event(title, text, alert_type=alert_type,
                               aggregation_key=n["fingerprint"], source_type_name="watchloop",
                               tags=tags)
            self._statsd.gauge("watchloop.alert.firing", 1 if n["status"] == "firing" else 0,
                               tags=tags)
        except OSError as exc:
            raise DeliveryError(f"DogStatsD at {self._settings.statsd_host}:"
                                f"{self._settings.statsd_port}: {exc}") from exc
        if self._api_key:
            base = (self._settings.api_url or "https://api.datadoghq.com").rstrip("/")
            body = {"title": title, "text": text, "alert_type": alert_type, "tags": tags,
                    "aggregation_key": n["fingerprint"], "source_type_name": "watchloop"}
            _post(self._session, f"{base}/api/v1/events", json.dumps(body).encode(),
                  {"DD-API-KEY": self._api_key,
                   "X-Watchloop-Idempotency-Key": n["key"]},
                  self._settings.timeout_s, "the Datadog events API")

    def close(self) -> None:
        self._statsd.close_socket()


class RetrainSink:
    """Hands firing alerts that carry a ``model`` label to the feedback loop's trigger."""

    def __init__(self, trigger: RetrainTrigger, name: str = "retrain") -> None:
        self.name = name
        self._trigger = trigger

    def send(self, notification: dict[str, Any]) -> None:
        for alert in notification.get("alerts", [notification]):
            model = alert["labels"].get("model")
            if alert["status"] == "firing" and model:
                reason = f"alert {alert['labels'].get('alertname')} fired"
                self._trigger.trigger(model, reason, alert=alert)


def build_sink(settings: Any, *, env: str = "",
               session_factory: Callable[[], requests.Session] = requests.Session,
               retrain: RetrainTrigger | None = None) -> Sink:
    if isinstance(settings, RetrainReceiver):
        if retrain is None:
            raise ValueError(f"receiver {settings.name!r} is of type retrain, but no feedback "
                             "loop is configured (add a feedback: section)")
        return RetrainSink(retrain, settings.name)
    if isinstance(settings, WebhookReceiver):
        return WebhookSink(settings, session_factory())
    if isinstance(settings, AlertmanagerReceiver):
        return AlertmanagerSink(settings, session_factory())
    if isinstance(settings, DatadogReceiver):
        return DatadogSink(settings, env=env, session=session_factory())
    raise TypeError(f"no sink for {type(settings).__name__}")
