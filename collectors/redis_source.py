"""Inference logs and labels from Redis streams, through a consumer group.

Entries are XACKed only after the store accepted them. On start the consumer first re-reads
its own pending entries (delivered before a crash, never acknowledged), and it claims entries
left pending by other consumers for longer than ``claim_idle_ms``; then it reads new ones.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from telemetry.boundary import translate, translated
from telemetry.extras import require
from telemetry.problems import raise_at

from .base import COLLECTOR_ERRORS, SourceBatch, SourceRecord
from .payloads import split_message


class RedisStreamSettings(BaseModel):
    """A Redis consumer group reading an inference-log stream and a label stream."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["redis-stream"] = "redis-stream"
    name: str = Field("redis", min_length=1)
    # a password belongs in ${ENV}: redis://:${PW}@host
    url: str = Field("redis://127.0.0.1:6379/0", pattern=r"^(rediss?|unix)://")
    log_stream: str | None = "watchloop:logs"
    label_stream: str | None = "watchloop:labels"
    group: str = Field("watchloop", min_length=1)
    consumer: str = ""  # default: the host name; keep it stable across restarts
    field: str = Field("data", min_length=1)  # the entry field holding the JSON record(s)
    claim_idle_ms: int = Field(60_000, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> RedisStreamSettings:
        problems = []
        if not self.log_stream and not self.label_stream:
            problems.append((("log_stream",), "give log_stream and/or label_stream", None))
        elif self.log_stream == self.label_stream:
            problems.append((("label_stream",), "must differ from log_stream; a stream holds "
                             "one kind of record", self.label_stream))
        raise_at(type(self).__name__, problems)
        return self

    @property
    def collector_name(self) -> str:
        """The name its health rows and metrics carry."""
        return self.name


class RedisStreamSource:
    """A ``RecordSource`` over XREADGROUP / XACK."""

    def __init__(
        self, settings: RedisStreamSettings, client_factory: Callable[[], Any] | None = None
    ) -> None:
        streams = {settings.log_stream: "log", settings.label_stream: "label"}
        self._kinds = {s: k for s, k in streams.items() if s}
        self.settings = settings
        self.name = settings.name
        self.consumer = settings.consumer or socket.gethostname()
        self._client_factory = client_factory
        self._client: Any = None
        # Where the re-read of this consumer's pending entries stands, per stream: pending
        # entries are read once after a (re)start, from "0" on, then new ones with ">".
        self._backlog: dict[str, Any] = {}
        self._unacked: dict[str, set] = {}  # stored entries whose XACK has not gone through
        self._held: list[SourceRecord] = []  # read beyond the batch; delivered next

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        redis = require("redis", "the Redis stream source")

        with translated("Redis", self._address(), COLLECTOR_ERRORS):
            client = (self._client_factory or (lambda: redis.Redis.from_url(
                self.settings.url, socket_timeout=10)))()
            for stream in self._kinds:
                try:
                    client.xgroup_create(stream, self.settings.group, id="0", mkstream=True)
                except redis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
        self._client = client
        return client

    def _address(self) -> str:
        from urllib.parse import urlparse

        parsed = urlparse(self.settings.url)
        return f"{parsed.hostname}:{parsed.port or 6379}"

    def poll(self, max_records: int, timeout_s: float) -> SourceBatch:
        """At most ``max_records`` records: this consumer's pending entries once after a start,
        then claimed stale ones, then new ones. An entry may carry several records; those
        beyond the batch are held for the next poll."""
        if self._unacked:
            self._ack_pending()
        if len(self._held) < max_records:
            self._held += self._read(max_records - len(self._held), timeout_s)
        records, self._held = self._held[:max_records], self._held[max_records:]
        client = self._client
        return SourceBatch(records, lag=self._lag(client) if records and client else None)

    def _read(self, count: int, timeout_s: float) -> list[SourceRecord]:
        redis = require("redis", "the Redis stream source")

        client = self._connect()
        group, me = self.settings.group, self.consumer
        try:
            entries: list[tuple[str, Any, dict]] = []
            for stream in self._kinds:
                cursor = self._backlog.setdefault(stream, "0")
                if cursor is None:
                    continue
                got = _entries(client.xreadgroup(group, me, {stream: cursor}, count=count))
                if got:
                    self._backlog[stream] = got[-1][1]  # pending entries after this one next
                else:
                    self._backlog[stream] = None
                    _, claimed, *_ = client.xautoclaim(
                        stream, group, me, self.settings.claim_idle_ms, "0-0", count=count)
                    got = [(stream, eid, fields) for eid, fields in claimed if fields]
                entries += got
            if not entries:
                fresh = client.xreadgroup(group, me, dict.fromkeys(self._kinds, ">"),
                                          count=count, block=max(1, int(timeout_s * 1000)))
                entries = _entries(fresh)
        except redis.RedisError as exc:
            self._client = None
            self._backlog.clear()  # what was delivered but not stored is pending again
            self._held = []
            raise translate(exc, "Redis", self._address(), COLLECTOR_ERRORS,
                            "reading streams") from exc
        records = []
        for stream, entry_id, fields in entries:
            kind = self._kinds[stream]
            value = fields.get(self.settings.field.encode(), fields.get(self.settings.field))
            if value is None:
                entry = json.dumps({_text(k): _text(v) for k, v in fields.items()})
                error = f"stream entry {_text(entry_id)} has no {self.settings.field!r} field"
                records.append(SourceRecord(kind, entry, (stream, entry_id, True), error=error))
                continue
            payloads = split_message(value)
            for i, payload in enumerate(payloads):
                # Only the entry's last record, once stored, lets the entry be acknowledged.
                position = (stream, entry_id, i == len(payloads) - 1)
                records.append(SourceRecord(kind, payload, position))
        return records

    def _lag(self, client: Any) -> float | None:
        """Entries not yet delivered to the group (Redis 7 reports it per group)."""
        redis = require("redis", "the Redis stream source")

        total = 0
        try:
            for stream in self._kinds:
                groups = client.xinfo_groups(stream)
                group = next((g for g in groups if _text(g["name"]) == self.settings.group), None)
                if group is None or group.get("lag") is None:
                    return None
                total += int(group["lag"])
        except redis.RedisError:
            return None
        return float(total)

    def acknowledge(self, records: Sequence[SourceRecord]) -> None:
        """XACK every entry the records came from; a failed XACK is retried on the next poll."""
        for record in records:
            stream, entry_id, last = record.position
            if last:
                self._unacked.setdefault(stream, set()).add(entry_id)
        self._ack_pending()

    def _ack_pending(self) -> None:
        redis = require("redis", "the Redis stream source")

        if not self._unacked:
            return
        try:
            pipe = self._connect().pipeline(transaction=False)
            for stream, ids in self._unacked.items():
                pipe.xack(stream, self.settings.group, *ids)
            pipe.execute()
        except redis.RedisError as exc:
            self._client = None
            raise translate(exc, "Redis", self._address(), COLLECTOR_ERRORS,
                            "XACK (will retry)") from exc
        self._unacked = {}

    def close(self) -> None:
        self._held = []
        self._backlog.clear()
        if self._client is not None:
            self._client.close()
            self._client = None


def _entries(response: Any) -> list[tuple[str, Any, dict]]:
    """Flatten an XREADGROUP reply (RESP2 list or RESP3 dict) into (stream, id, fields)."""
    if not response:
        return []
    items = response.items() if isinstance(response, dict) else response
    out = []
    for stream, messages in items:
        for entry_id, fields in messages:
            if fields:
                out.append((_text(stream), entry_id, fields))
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
