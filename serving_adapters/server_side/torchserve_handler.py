"""Watchloop's TorchServe handler: scores JSON instances and logs each request's payload.

Request body: ``{"instances": [{"request_id": "r1", "features": {...}}, ...]}`` or one such
instance. Response: ``{"model", "version", "request_ids", "predictions"}``, so every answer
names the version that produced it. A malformed request is a 400, a model failure a 500;
payload logging never changes the answer.
"""

import json
import time

from ts.metrics.dimension import Dimension
from ts.utils.util import PredictionException
from watchloop_runtime import BadRequest, ModelRuntime, failure_text, request_ids

_runtime = None
_reported_lost = None


def handle(data, context):
    global _runtime
    if _runtime is None:
        _runtime = ModelRuntime(context.system_properties["model_dir"])
    if data is None:  # TorchServe's warm-up call on worker start
        return None
    return [_answer(request, context) for request in data]


def _answer(request, context):
    started = time.perf_counter()
    status = "error"
    try:
        answer = _score(request, started)
        status = "ok"
        return answer
    finally:
        _count(context, status, (time.perf_counter() - started) * 1000)


def _score(request, started):
    runtime = _runtime
    body = request.get("body") if isinstance(request, dict) else None
    if body is None and isinstance(request, dict):
        body = request.get("data")
    try:
        if isinstance(body, bytes | bytearray):
            body = json.loads(body)
        instances = body.get("instances", [body]) if isinstance(body, dict) else body
        if not isinstance(instances, list) or not instances:
            raise BadRequest("expected {'instances': [...]} or one instance object")
        ids = request_ids(instances)
        rows = runtime.matrix(instances)
    except (BadRequest, ValueError) as exc:
        raise PredictionException(f"bad request: {exc}", 400) from exc
    try:
        scores = runtime.score(rows)
    except Exception as exc:
        runtime.log(ids, rows, None, started, error=failure_text(exc))
        raise PredictionException(f"model {runtime.model_name} version {runtime.version} "
                                  f"failed: {failure_text(exc)}", 500) from exc
    runtime.log(ids, rows, scores, started)
    return {"model": runtime.model_name, "version": runtime.version,
            "request_ids": ids, "predictions": scores}


def _count(context, status, latency_ms):
    """Per-version counters on TorchServe's metrics (its own label the default route
    "default"): requests by status, their summed latency, and payload logs lost (reported
    once at zero so the series exists)."""
    global _reported_lost
    runtime = _runtime
    model = [Dimension("ModelName", runtime.model_name),
             Dimension("ModelVersion", runtime.version)]
    try:
        context.metrics.add_counter("WatchloopRequests", 1, dimensions=[
            *model, Dimension("Status", status), Dimension("Level", "Model")])
        context.metrics.add_counter("WatchloopLatencyMs", latency_ms, dimensions=[
            *model, Dimension("Level", "Model")])
        lost = runtime.lost
        if _reported_lost is None or lost != _reported_lost:
            delta, _reported_lost = lost - (_reported_lost or 0), lost
            context.metrics.add_counter("PayloadLogLost", delta, dimensions=[
                *model, Dimension("Level", "Model")])
    except Exception:  # noqa: BLE001 - metrics must never fail a request
        pass
