"""Publish inference logs from inside a model server, batched and off the request path.

This module runs inside TorchServe workers and Triton's Python-backend stubs: it is copied
next to our handler / ``model.py`` (so a server on another host needs no Watchloop install)
and imports nothing from Watchloop. ``PayloadLog.publish`` only appends to a bounded queue;
a daemon thread sends batches as one JSON array per Kafka message or Redis stream entry,
which the collectors split back into records (``collectors.payloads``).

A logging failure never fails a request: records that could not be published, or that
found the queue full, are counted (``failed``, ``dropped``) and the server exports the
counts on its metrics endpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from typing import Any

__all__ = ["PayloadLog", "PayloadLogConfig", "URL_ENV"]

log = logging.getLogger("watchloop.payload_log")

# Overrides the URL written in the model's metadata: a password belongs in the server's
# environment, never in a model archive.
URL_ENV = "WATCHLOOP_PAYLOAD_LOG_URL"


class PayloadLogConfig:
    """Where and how to publish: ``kind`` is ``redis`` (a stream) or ``kafka`` (a topic)."""

    def __init__(self, kind: str, url: str, target: str, *, batch_size: int = 200,
                 flush_ms: int = 200, queue_size: int = 10_000, timeout_s: float = 1.0,
                 field: str = "data") -> None:
        if kind not in ("redis", "kafka"):
            raise ValueError(f"payload log kind must be 'redis' or 'kafka', not {kind!r}")
        self.kind = kind
        self.url = url
        self.target = target
        self.batch_size = batch_size
        self.flush_ms = flush_ms
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self.field = field

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PayloadLogConfig | None:
        """The config written in a model's metadata, or None when logging is off."""
        if not data:
            return None
        data = dict(data)
        data["url"] = os.environ.get(URL_ENV) or data["url"]
        return cls(data.pop("kind"), data.pop("url"), data.pop("target"), **data)


class PayloadLog:
    """A bounded queue drained by one daemon thread that publishes batches."""

    def __init__(self, config: PayloadLogConfig) -> None:
        self.config = config
        self.published = 0
        self.failed = 0  # records a publish attempt lost (broker down, refused)
        self.dropped = 0  # records refused because the queue was full
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(config.queue_size)
        self._client: Any = None
        self._retry_at = 0.0
        self._backoff = 0.5
        self._warned_at = -60.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="payload-log", daemon=True)
        self._thread.start()

    @property
    def lost(self) -> int:
        """Every record that did not reach the broker: failed plus dropped."""
        return self.failed + self.dropped

    def publish(self, record: dict[str, Any]) -> None:
        """Queue one inference log; never blocks, never raises."""
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until the queue is empty (for tests and shutdown); True if it emptied."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return False

    def close(self) -> None:
        """Publish what is queued (briefly), then stop the thread."""
        self.flush(self.config.timeout_s)
        self._stop.set()
        self._thread.join(self.config.timeout_s + 1)
        self._disconnect()

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._take()
            if not batch:
                continue
            try:
                self._send(batch)
                self.published += len(batch)
            except Exception as exc:  # noqa: BLE001 - any client failure is counted, not raised
                self.failed += len(batch)
                if time.monotonic() - self._warned_at < 60:
                    continue  # one warning a minute: the counters carry the rest
                self._warned_at = time.monotonic()
                log.warning("payload log: %d records lost publishing to %s %s: %s "
                            "(%d lost so far)", len(batch), self.config.kind,
                            self.config.target, exc, self.lost)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _take(self) -> list[dict[str, Any]]:
        try:
            batch = [self._queue.get(timeout=0.2)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.config.flush_ms / 1000
        while len(batch) < self.config.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _send(self, batch: list[dict[str, Any]]) -> None:
        if self._client is None:
            if time.monotonic() < self._retry_at:
                raise ConnectionError("broker unreachable, reconnecting after a backoff")
            try:
                self._client = self._connect()
            except Exception:
                self._retry_at = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, 30.0)
                raise
            self._backoff = 0.5
        body = json.dumps(batch, separators=(",", ":"), default=str).encode()
        try:
            if self.config.kind == "redis":
                self._client.xadd(self.config.target, {self.config.field: body})
            else:
                self._client.send(self.config.target, body).get(timeout=self.config.timeout_s)
        except Exception:
            self._disconnect()
            raise

    def _connect(self) -> Any:
        timeout = self.config.timeout_s
        if self.config.kind == "redis":
            import redis

            client = redis.Redis.from_url(self.config.url, socket_timeout=timeout,
                                          socket_connect_timeout=timeout)
            client.ping()
            return client
        from kafka import KafkaProducer

        servers = self.config.url.removeprefix("kafka://").split(",")
        return KafkaProducer(bootstrap_servers=servers, linger_ms=0, acks=1,
                             request_timeout_ms=int(timeout * 1000),
                             max_block_ms=int(timeout * 1000))

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(Exception):  # closing a broken client may fail too
            client.close()
