"""The alerting endpoints of the API: alerts, silences and acknowledgements.

Reading is open; creating or expiring a silence and acknowledging an alert change what pages
people, so they take the API's bearer token when one is configured, and each is recorded in
``alert_events`` with who did it (the ``author``, else the ``X-Watchloop-Actor`` header).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, Field, field_validator, model_validator
from starlette.concurrency import run_in_threadpool

from alerts.evaluator import EVENT_COLUMNS
from alerts.state import AlertStore, Matcher, Silence
from telemetry import Store, StoreError
from telemetry.clock import utc, utc_now

log = logging.getLogger("watchloop.alerts")


class SilenceRequest(BaseModel):
    """A silence: every matcher must match an alert's labels."""

    matchers: list[Annotated[str, Field(pattern=r"^\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=~|!~|!=|=)")]] = \
        Field(min_length=1, examples=[["alertname=fraud-p99"]])
    starts: AwareDatetime | None = None  # default: now
    ends: AwareDatetime
    comment: str = Field(min_length=1, max_length=1000)
    author: str | None = Field(None, max_length=200)

    @field_validator("matchers")
    @classmethod
    def _parse(cls, matchers: list[str]) -> list[str]:
        for text in matchers:
            Matcher.parse(text)
        return matchers

    @model_validator(mode="after")
    def _ends_after_it_starts(self) -> SilenceRequest:
        if self.ends <= (self.starts or utc_now()):
            raise ValueError("ends must be after starts (and after now)")
        return self


class SilenceBody(BaseModel):
    id: str
    matchers: list[str]
    starts: datetime
    ends: datetime
    author: str
    comment: str
    active: bool


class AckRequest(BaseModel):
    comment: str = Field("", max_length=1000)
    author: str | None = Field(None, max_length=200)


class AlertBody(BaseModel):
    fingerprint: str
    state: str
    since: datetime | None
    value: float | None
    labels: dict[str, str]


class Created(BaseModel):
    id: str


class Problem(BaseModel):
    error: str


def add_alert_routes(app: FastAPI, alerts: AlertStore, store: Store,
                     unauthorized: Callable[[Request], JSONResponse | None]) -> None:
    """Mount the alerting endpoints on ``app``."""

    def record(state: str, fingerprint: str, summary: str, labels: dict[str, str],
               actor: str) -> None:
        now = utc_now()
        try:
            store.insert("alert_events", [[now, now, fingerprint, "", "", state, "", "", None,
                                           summary, labels, actor]], EVENT_COLUMNS)
        except StoreError as exc:  # the change itself is in Redis, where it counts
            log.error("alerts: recording %s by %s failed: %s", state, actor, exc)

    def actor(request: Request, author: str | None) -> str:
        return author or request.headers.get("x-watchloop-actor") or "api"

    @app.get("/v1/alerts", summary="Alerts that are not inactive",
             response_model=list[AlertBody])
    def list_alerts() -> list[dict[str, Any]]:
        return [{"fingerprint": fp, "state": state.state, "since": state.since,
                 "value": state.value, "labels": labels}
                for fp, (state, labels) in sorted(alerts.alerts().items())
                if state.state != "inactive"]

    @app.get("/v1/silences", summary="Silences, active and expired",
             response_model=list[SilenceBody])
    def list_silences() -> list[dict[str, Any]]:
        now = utc_now()
        return [_silence(s, now) for s in alerts.silences()]

    @app.post("/v1/silences", summary="Silence alerts", status_code=201,
              responses={201: {"model": Created}, 401: {"model": Problem}})
    async def create_silence(body: SilenceRequest, request: Request) -> Response:
        denied = unauthorized(request)
        if denied is not None:
            return denied
        starts = utc(body.starts) if body.starts else utc_now()
        who = actor(request, body.author)
        silence = Silence(tuple(Matcher.parse(m) for m in body.matchers), starts,
                          utc(body.ends), who, body.comment)
        silence_id = await run_in_threadpool(alerts.add_silence, silence)
        await run_in_threadpool(record, "silenced", f"silence:{silence_id}", body.comment,
                                {"matchers": ", ".join(body.matchers)}, who)
        return JSONResponse({"id": silence_id}, status_code=201)

    @app.delete("/v1/silences/{silence_id}", summary="Expire a silence now",
                responses={200: {"model": Created}, 401: {"model": Problem},
                           404: {"model": Problem}})
    async def expire_silence(silence_id: str, request: Request) -> Response:
        denied = unauthorized(request)
        if denied is not None:
            return denied
        if not await run_in_threadpool(alerts.expire_silence, silence_id):
            return JSONResponse({"error": f"no silence {silence_id!r}"}, status_code=404)
        await run_in_threadpool(record, "unsilenced", f"silence:{silence_id}", "",
                                {}, actor(request, None))
        return JSONResponse({"id": silence_id})

    @app.post("/v1/alerts/{fingerprint}/ack", summary="Acknowledge an alert",
              responses={200: {"model": Created}, 401: {"model": Problem},
                         404: {"model": Problem}})
    async def acknowledge(fingerprint: str, body: AckRequest, request: Request) -> Response:
        denied = unauthorized(request)
        if denied is not None:
            return denied
        known = await run_in_threadpool(alerts.alerts)
        if fingerprint not in known:
            return JSONResponse({"error": f"no alert {fingerprint!r}"}, status_code=404)
        who = actor(request, body.author)
        await run_in_threadpool(alerts.acknowledge, fingerprint, who, body.comment)
        _, labels = known[fingerprint]
        await run_in_threadpool(record, "acknowledged", fingerprint, body.comment, labels, who)
        return JSONResponse({"id": fingerprint})


def _silence(silence: Silence, now: datetime) -> dict[str, Any]:
    return {"id": silence.id, "matchers": [f"{m.name}{m.op}{m.value}" for m in silence.matchers],
            "starts": silence.starts, "ends": silence.ends, "author": silence.author,
            "comment": silence.comment, "active": silence.starts <= now < silence.ends}

