"""The model endpoints of the API: roll back, promote and retrain, for the console and people.

Each changes production, so each takes the API's bearer token when one is configured and is
recorded with who asked (the ``author``, else the ``X-Watchloop-Actor`` header): in
``deployments`` by the serving path, in ``lineage`` by the feedback loop. With a feedback
loop configured, promotion and rollback go through it (the ``champion`` alias follows the
traffic); with only a ``serving:`` backend, through the verified swap directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from feedback import FeedbackService
from serving_adapters import Deployer
from serving_adapters.errors import ServingError


class ChangeRequest(BaseModel):
    reason: str = Field("", max_length=1000)
    author: str | None = Field(None, max_length=200)


class RollbackRequest(ChangeRequest):
    to: str | None = Field(None, max_length=200, description="default: the version before")


class PromoteRequest(ChangeRequest):
    version: str = Field(min_length=1, max_length=200)


class RetrainRequest(ChangeRequest):
    force: bool = False  # past the cooldown and budget (never past the one-run lease)


class SwapBody(BaseModel):
    model: str
    version: str
    previous: str | None
    outcome: str
    reason: str


def add_model_routes(app: FastAPI, *, feedback: FeedbackService | None,
                     deployer: Deployer | None,
                     unauthorized: Callable[[Request], JSONResponse | None]) -> None:
    """Mount the model endpoints on ``app`` (each answers 409 when what it needs is not
    configured)."""

    def actor(request: Request, author: str | None) -> str:
        return author or request.headers.get("x-watchloop-actor") or "api"

    def unconfigured(what: str) -> JSONResponse:
        return JSONResponse({"error": f"no {what} is configured in this Watchloop"},
                            status_code=409)

    async def swap(call: Callable[[], Any]) -> Response:
        try:
            result = await run_in_threadpool(call)
        except (ServingError, RuntimeError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        body = {"model": result.model, "version": result.version,
                "previous": result.previous, "outcome": result.outcome,
                "reason": result.reason}
        if result.outcome in ("promoted", "rolled_back"):
            return JSONResponse(body)
        return JSONResponse({**body, "error": f"{result.outcome}: {result.reason}"},
                            status_code=409)

    @app.post("/v1/models/{model}/rollback", summary="Give the traffic back",
              responses={200: {"model": SwapBody}, 401: {"description": "token required"},
                         409: {"description": "nothing to roll back to, or no backend"}})
    async def rollback(model: str, body: RollbackRequest, request: Request) -> Response:
        denied = unauthorized(request)
        if denied is not None:
            return denied
        who, why = actor(request, body.author), body.reason or "rolled back by hand"
        if feedback is not None and feedback.loop.deployer is not None:
            return await swap(lambda: feedback.loop.rollback(model, who, reason=why,
                                                             to=body.to))
        if deployer is None:
            return unconfigured("serving backend (the serving: section)")
        return await swap(lambda: deployer.rollback(model, who, to=body.to, reason=why))

    @app.post("/v1/models/{model}/promote", summary="Deploy and promote a registered version",
              responses={200: {"model": SwapBody}, 401: {"description": "token required"},
                         409: {"description": "refused by its verification, or no loop"}})
    async def promote(model: str, body: PromoteRequest, request: Request) -> Response:
        denied = unauthorized(request)
        if denied is not None:
            return denied
        if feedback is None:
            return unconfigured("feedback loop (the feedback: section)")
        who, why = actor(request, body.author), body.reason or "promoted by hand"
        return await swap(lambda: feedback.loop.promote(model, body.version, who, reason=why))

    @app.post("/v1/models/{model}/retrain", summary="Queue a retraining under the policy",
              status_code=202, responses={401: {"description": "token required"},
                                          409: {"description": "no feedback loop"}})
    async def retrain(model: str, body: RetrainRequest, request: Request) -> Response:
        denied = unauthorized(request)
        if denied is not None:
            return denied
        if feedback is None:
            return unconfigured("feedback loop (the feedback: section)")
        who = actor(request, body.author)
        feedback.request(model, actor=who, reason=body.reason or "requested by hand",
                         force=body.force)
        return JSONResponse({"model": model, "queued": True, "actor": who}, status_code=202)
