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
import json
import re
import time
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from telemetry import StoreError, TelemetryWriter
from telemetry.group_commit import GroupCommit
from telemetry.store import Store

from .metrics import ShellMetrics


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
) -> FastAPI:
    """Build the API over a store and a writer; ``token`` requires a bearer token on ingest."""
    # Concurrent requests are written together (group commit), each answered once stored.
    commits = GroupCommit(writer)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(commits.close)

    app = FastAPI(title="Watchloop", version="0.1.0", docs_url="/docs", redoc_url=None,
                  lifespan=lifespan)

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

    @app.post("/v1/logs", summary="Ingest inference logs")
    async def ingest_logs(request: Request) -> Response:
        """Store a batch of inference logs; bad records are dead-lettered with the reason."""
        return await ingest(request, "log")

    @app.post("/v1/labels", summary="Ingest delayed labels")
    async def ingest_labels(request: Request) -> Response:
        """Store a batch of ground-truth labels; bad records are dead-lettered."""
        return await ingest(request, "label")

    @app.get("/healthz", summary="Liveness")
    def healthz() -> dict[str, str]:
        """The process is up and serving HTTP."""
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness")
    def readyz() -> Response:
        """Ready when the store answers (and the shell's components have started)."""
        ready = store.ping() and (is_ready is None or is_ready())
        body = {"status": "ready" if ready else "not ready", "store": store.location.display}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics about Watchloop")
    def prometheus_metrics() -> Response:
        """Watchloop's own metrics in the Prometheus text format."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


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
