"""The HTTP API fuzzed from its own OpenAPI document by schemathesis.

Schemathesis generates requests from the documented schemas (valid and invalid bodies,
headers, encodings) and checks every response: no 5xx, a status code and a body the document
describes, the documented content type. The API runs as users run it: uvicorn over a real
embedded store.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from prometheus_client import CollectorRegistry

from telemetry import Migrator, TelemetryWriter, open_store
from telemetry.metrics import IngestMetrics
from watchloop.api import create_app
from watchloop.metrics import ShellMetrics
from watchloop.shell import ApiServer


@pytest.fixture(scope="module")
def served_api(redis_server) -> Iterator[str]:
    import redis

    from alerts.state import AlertStore

    store = open_store(f"chdb://memory?database=t_fuzz_{uuid.uuid4().hex[:8]}")
    Migrator(store).migrate()
    registry = CollectorRegistry()
    writer = TelemetryWriter(store, metrics=IngestMetrics(registry))
    alerts = AlertStore(redis.Redis.from_url(redis_server.url),
                        prefix=f"fuzz{uuid.uuid4().hex[:6]}")
    server = ApiServer(create_app(store, writer, ShellMetrics(registry),
                                  max_body_bytes=256 * 1024, alerts=alerts), "127.0.0.1", 0)
    server.start()
    yield server.url
    server.stop()
    writer.close()
    store.command(f"DROP DATABASE IF EXISTS `{store.database}`")


@pytest.fixture(scope="module")
def api_schema(served_api):
    return schemathesis.openapi.from_url(f"{served_api}/openapi.json")


def test_every_response_is_documented_and_none_is_a_server_error(api_schema):
    # Each operation's cases are drawn with Hypothesis directly: schemathesis's pytest
    # fixture loader reads a node attribute pytest 9 no longer has.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /v1/logs", "POST /v1/labels", "GET /healthz", "GET /readyz", "GET /metrics",
        "GET /v1/alerts", "POST /v1/silences", "DELETE /v1/silences/{silence_id}",
        "POST /v1/alerts/{fingerprint}/ack"}
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case) -> None:
            # A schema-valid body may still be refused on what a schema cannot say (a
            # silence that already ended, a matcher's regular expression): those answers
            # are checked against their documented schema like every other.
            case.call_and_validate(
                excluded_checks=[schemathesis.checks.positive_data_acceptance])

        fuzz()


def test_the_document_describes_the_record_formats(api_schema):
    raw = api_schema.raw_schema
    records = raw["components"]["schemas"]
    assert {"InferenceLogRecord", "LabelRecord"} <= set(records)
    assert set(records["InferenceLogRecord"]["required"]) == {
        "request_id", "model", "version", "event_time", "latency_ms"}
    body = raw["paths"]["/v1/logs"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-ndjson"} <= set(body)
