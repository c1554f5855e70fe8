"""The HTTP API: ingest of inference logs and labels, health, readiness, /metrics.

Ingest accepts a JSON array, a JSON object (one record, or ``{"records": [...]}``), or JSON
Lines. Every record is validated on its own: bad ones are dead-lettered with the reason and
the response counts accepted, rejected and duplicate records. A 2xx means the store holds the
batch; a 503 (store unavailable) means nothing of it was acknowledged and it may be resent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import importlib.util
import json
import re
import time
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from alerts.state import AlertStore
from feedback import FeedbackService
from serving_adapters import Deployer
from telemetry import StoreError, TelemetryWriter
from telemetry.group_commit import GroupCommit
from telemetry.records import InferenceLogRecord, LabelRecord
from telemetry.store import Store

from .alerts_api import add_alert_routes
from .metrics import ShellMetrics
from .models_api import add_model_routes


class _BodyTooLarge(Exception):
    pass


class _UnsupportedEncoding(Exception):
    pass


class _CorruptBody(Exception):
    pass


#: Content-Encodings the ingest endpoints decode; anything else is answered with 415.
ENCODINGS = ("identity", "gzip", "zstd")


def create_app(
    store: Store,
    writer: TelemetryWriter,
    metrics: ShellMetrics,
    *,
    token: str | None = None,
    max_body_bytes: int = 16 * 1024 * 1024,
    is_ready: Callable[[], bool] | None = None,
    alerts: AlertStore | None = None,
    feedback: FeedbackService | None = None,
    deployer: Deployer | None = None,
) -> FastAPI:
    """Build the API over a store and a writer; ``token`` requires a bearer token on ingest."""
    # Concurrent requests are written together (group commit), each answered once stored.
    commits = GroupCommit(writer)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(commits.close)

    app = FastAPI(title="Watchloop", version="0.1.0", docs_url=None, redoc_url=None,
                  lifespan=lifespan, description=__doc__)
    # Swagger UI from an installed package, not a CDN: /docs works with no network.
    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_assets()), name="docs-assets")

    def openapi() -> dict[str, Any]:
        """FastAPI's schema, with the record schemas the ingest bodies refer to."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for record in (InferenceLogRecord, LabelRecord):
                components[record.__name__] = record.model_json_schema(
                    ref_template="#/components/schemas/{model}")
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title="Watchloop API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png")

    def unauthorized(request: Request) -> JSONResponse | None:
        if token is None:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token):
            return None
        return JSONResponse(
            {"error": "a valid bearer token is required (Authorization: Bearer <token>)"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    if alerts is not None:
        add_alert_routes(app, alerts, store, unauthorized)
    add_model_routes(app, feedback=feedback, deployer=deployer, unauthorized=unauthorized)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            raise _BodyTooLarge
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise _BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    async def ingest(request: Request, kind: str) -> Response:
        route = f"/v1/{kind}s"
        denied = unauthorized(request)
        if denied is not None:
            metrics.http_requests.labels(route, "401").inc()
            return denied
        try:
            body = decode_body(await read_body(request),
                               request.headers.get("content-encoding", ""), max_body_bytes)
        except _BodyTooLarge:
            metrics.http_requests.labels(route, "413").inc()
            return JSONResponse(
                {"error": f"body exceeds {max_body_bytes} bytes (decoded); send smaller "
                          "batches"},
                status_code=413,
            )
        except _UnsupportedEncoding as exc:
            metrics.http_requests.labels(route, "415").inc()
            return JSONResponse({"error": str(exc)}, status_code=415,
                                headers={"Accept-Encoding": ", ".join(ENCODINGS)})
        except _CorruptBody as exc:  # nothing readable to dead-letter: the client must resend
            metrics.http_requests.labels(route, "400").inc()
            return JSONResponse({"error": str(exc)}, status_code=400)
        records, unparsable = split_records(body, request.headers.get("content-type", ""))
        started = time.perf_counter()
        try:
            result = await asyncio.wrap_future(commits.submit(kind, records, "http"))
            if unparsable:
                await run_in_threadpool(
                    writer.dead_letter, [(body, unparsable)], "http", f"{kind}_batch")
        except StoreError as exc:
            metrics.store_errors.labels(kind).inc()
            metrics.http_requests.labels(route, "503").inc()
            return JSONResponse(
                {"error": f"the store did not accept the batch; nothing was kept: {exc}"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        metrics.store_write_seconds.labels(kind).observe(time.perf_counter() - started)
        metrics.http_requests.labels(route, "200").inc()
        summary = result.as_dict()
        if unparsable:
            summary["rejected"] += 1
            summary["errors"].append({"index": None, "reason": unparsable})
        return JSONResponse(summary)

    @app.post("/v1/logs", summary="Ingest inference logs", responses=INGEST_RESPONSES,
              openapi_extra=request_body(InferenceLogRecord))
    async def ingest_logs(request: Request) -> Response:
        """Store a batch of inference logs; bad records are dead-lettered with the reason.

        The body is a JSON array of records, one record, ``{"records": [...]}``, or JSON
        Lines (``application/x-ndjson``), optionally gzip- or zstd-encoded."""
        return await ingest(request, "log")

    @app.post("/v1/labels", summary="Ingest delayed labels", responses=INGEST_RESPONSES,
              openapi_extra=request_body(LabelRecord))
    async def ingest_labels(request: Request) -> Response:
        """Store a batch of ground-truth labels; bad records are dead-lettered.

        The body takes the same forms as for inference logs."""
        return await ingest(request, "label")

    @app.get("/healthz", summary="Liveness")
    def healthz() -> dict[str, str]:
        """The process is up and serving HTTP."""
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness",
             responses={200: {"model": Readiness}, 503: {"model": Readiness}})
    def readyz() -> Response:
        """Ready when the store answers (and the shell's components have started)."""
        ready = store.ping() and (is_ready is None or is_ready())
        body = {"status": "ready" if ready else "not ready", "store": store.location.display}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics about Watchloop",
             response_class=PlainTextResponse,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}})
    def prometheus_metrics() -> Response:
        """Watchloop's own metrics in the Prometheus text format."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


class RecordError(BaseModel):
    """One refused record: where it was in the batch (null for the body as a whole), why."""

    index: int | None
    reason: str


class IngestSummary(BaseModel):
    """What became of a batch; 200 means every accepted record is stored."""

    accepted: int
    rejected: int
    duplicates: int
    errors: list[RecordError] = Field(description="the first 100 rejections")


class ErrorBody(BaseModel):
    """Why a request was refused as a whole."""

    error: str


class Readiness(BaseModel):
    status: str
    store: str


INGEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": IngestSummary, "description": "Stored; rejected records dead-lettered"},
    400: {"model": ErrorBody, "description": "A compressed body that cannot be decoded"},
    401: {"model": ErrorBody, "description": "A bearer token is required"},
    413: {"model": ErrorBody, "description": "The (decoded) body is too large"},
    415: {"model": ErrorBody, "description": "A Content-Encoding other than gzip or zstd"},
    503: {"model": ErrorBody, "description": "The store is unavailable; nothing was kept, "
                                             "resend after Retry-After"},
}


def request_body(record: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of an ingest endpoint: the record schema, in its forms."""
    one = {"$ref": f"#/components/schemas/{record.__name__}"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"oneOf": [
                    {"type": "array", "items": one}, one,
                    {"type": "object", "required": ["records"],
                     "properties": {"records": {"type": "array", "items": one}}},
                ]}},
                "application/x-ndjson": {"schema": {
                    "type": "string", "description": f"one {record.__name__} per line"}},
            },
        },
    }


def swagger_ui_assets() -> str:
    """The directory of Swagger UI's files in the swagger-ui-py package (not imported: its
    package imports web-framework adapters we do not need)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed: pip install swagger-ui-py")
    return str(Path(spec.submodule_search_locations[0]) / "static")


def decode_body(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo a gzip or zstd Content-Encoding, never inflating past ``limit`` bytes."""
    codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
    for coding in reversed(codings):  # the last applied is listed last
        if coding == "identity":
            continue
        if coding in ("gzip", "x-gzip"):
            inflater = zlib.decompressobj(wbits=47)  # gzip or zlib header, detected
            try:
                body = inflater.decompress(body, limit + 1)
            except zlib.error as exc:
                raise _CorruptBody(f"body is not valid gzip: {exc}") from None
        elif coding == "zstd":
            import zstandard

            try:
                with zstandard.ZstdDecompressor().stream_reader(body) as reader:
                    body = reader.read(limit + 1)
            except zstandard.ZstdError as exc:
                raise _CorruptBody(f"body is not valid zstd: {exc}") from None
        else:
            raise _UnsupportedEncoding(
                f"Content-Encoding {coding!r} is not supported; use one of "
                f"{', '.join(ENCODINGS)}")
        if len(body) > limit:
            raise _BodyTooLarge
    return body


def split_records(body: bytes, content_type: str) -> tuple[list[Any], str]:
    """Split a request body into records, and say why if the body as a whole is unreadable.

    A JSON array gives its elements, an object gives itself (or its ``records``), anything else
    is read as JSON Lines with one raw record per non-blank line, validated one by one. An
    array that does not parse as a whole (one element truncated, or nested too deeply) is cut
    into its top-level elements as raw text, so that each is judged on its own.
    """
    text = body.strip()
    if not text:
        return [], ""
    if "ndjson" not in content_type and "jsonl" not in content_type and text[:1] in b"[{":
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            if text[:1] == b"[":
                return split_array(text), ""
            parsed = None  # several objects, one a line: fall through to JSON Lines
        if isinstance(parsed, list):
            return parsed, ""
        if isinstance(parsed, dict):
            inner = parsed.get("records")
            return (inner, "") if isinstance(inner, list) else ([parsed], "")
    return [line for line in text.splitlines() if line.strip()], ""


# A JSON string (escapes included) or one structural character.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{},]')


def split_array(text: bytes) -> list[bytes]:
    """The raw top-level elements of a JSON array that may be broken: strings and brackets are
    tracked, so a bad element costs itself and, at worst, the neighbour its damage reaches."""
    elements: list[bytes] = []
    depth, start = 0, 1
    for token in _TOKEN.finditer(text, 1):
        char = token.group()[:1]
        if char in b"[{":
            depth += 1
        elif char in b"]}":
            if depth == 0:  # the array's own closing bracket
                elements.append(text[start:token.start()])
                start = len(text)
                break
            depth -= 1
        elif char == b"," and depth == 0:
            elements.append(text[start:token.start()])
            start = token.end()
    elements.append(text[start:])
    return [e.strip() for e in elements if e.strip()]
