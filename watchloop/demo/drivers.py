"""What the demo's world does around Watchloop: customers, chargebacks, a feature pipeline, and
a Datadog agent.

- ``ServedTraffic`` sends transactions through the real serving backend at a steady rate
  (the server's payload logging streams their inference logs through Kafka) and publishes
  each one's ground truth to the label topic a little later, as chargebacks arrive.
- ``FeaturePipeline`` is a feature pipeline's consumer group: it keeps up with its topic
  except for a stall now and then, so the lag collector has lag to see build and drain.
- ``DogStatsdCapture`` listens where a Datadog agent would (a UDP port) and keeps what the
  alert sinks send it.

Each is a component (``start``/``stop``) with its own thread; none of them touches the store.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from feedback.demo_model import FEATURES, Transactions
from serving_adapters.base import ServingAdapter

log = logging.getLogger("watchloop.demo")


class ServedTraffic:
    """Transactions through the serving backend; their labels to Kafka ``label_delay_s`` later.

    ``drift`` (0 to 1) moves the world the transactions are drawn from
    (``feedback.demo_model.Transactions``); the story sets it to inject drift.
    """

    name = "demo-traffic"

    def __init__(self, adapter: ServingAdapter, model: str, *, bootstrap_servers: str,
                 label_topic: str, requests_per_s: float, instances_per_request: int,
                 label_delay_s: float, seed: int = 7) -> None:
        self._adapter = adapter
        self._model = model
        self._bootstrap = bootstrap_servers
        self._label_topic = label_topic
        self._interval = 1.0 / requests_per_s
        self._batch = instances_per_request
        self._label_delay = label_delay_s
        self._world = Transactions(seed)
        self._labels: deque[tuple[float, str, int]] = deque()  # (due, request id, label)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Any = None
        self.drift = 0.0
        self.answered: Counter[str] = Counter()  # instances scored, by the version answering
        self.first_answer: dict[str, float] = {}  # version: time.time() of its first answer
        self.failed = 0

    def start(self) -> None:
        from kafka import KafkaProducer

        self._producer = KafkaProducer(bootstrap_servers=self._bootstrap, linger_ms=50)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                self._send_one()
                self._release_labels()
            except Exception as exc:  # noqa: BLE001 - a failed request is counted, not fatal
                self.failed += 1
                log.warning("demo traffic: %s", exc)
            due = max(due + self._interval, time.monotonic() - 1.0)
            self._stop.wait(max(0.0, due - time.monotonic()))

    def _send_one(self) -> None:
        features, labels = self._world.sample(self._batch, drift=self.drift)
        instances = [{"request_id": uuid.uuid4().hex,
                      "features": dict(zip(FEATURES, map(float, row), strict=True))}
                     for row in features]
        answer = self._adapter.predict(self._model, instances)
        self.answered[answer.version] += len(instances)
        self.first_answer.setdefault(answer.version, time.time())
        arrives = time.monotonic() + self._label_delay
        self._labels.extend((arrives, sent["request_id"], int(label))
                            for sent, label in zip(instances, labels, strict=True))

    def _release_labels(self) -> None:
        now, arrived = time.monotonic(), time.time()  # when the chargebacks came in
        due = []
        while self._labels and self._labels[0][0] <= now:
            _, request_id, label = self._labels.popleft()
            due.append({"request_id": request_id, "label": label, "label_time": arrived})
        if due:
            self._producer.send(self._label_topic, json.dumps(due).encode())


class FeaturePipeline:
    """A producer of feature events and the consumer group that turns them into features.

    The consumer commits as it goes, but stalls for ``stall_s`` every ``every_s``, so the
    group's lag rises and drains the way a real pipeline's does after a slow batch.
    """

    name = "demo-feature-pipeline"
    group = "feature-pipeline"

    def __init__(self, bootstrap_servers: str, topic: str, *, events_per_s: float,
                 stall_s: float, every_s: float = 45.0) -> None:
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._interval = 1.0 / events_per_s
        self._stall_s = stall_s
        self._every_s = every_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._stop.clear()
        for target in (self._produce, self._consume):
            thread = threading.Thread(target=self._guarded, args=(target,),
                                      name=f"{self.name}-{target.__name__[1:]}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()

    def _guarded(self, target: Callable[[], None]) -> None:
        while not self._stop.is_set():
            try:
                target()
            except Exception as exc:  # noqa: BLE001 - the broker may blip; start over
                log.warning("feature pipeline: %s; retrying", exc)
                self._stop.wait(2.0)

    def _produce(self) -> None:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=self._bootstrap, linger_ms=0)
        try:
            account = 0
            while not self._stop.wait(self._interval):
                account += 1
                event = {"account": account % 997, "ts": time.time(), "event": "page_view"}
                producer.send(self._topic, json.dumps(event).encode(),
                              key=str(account % 997).encode())
        finally:
            producer.close(timeout=5)

    def _consume(self) -> None:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(self._topic, bootstrap_servers=self._bootstrap,
                                 group_id=self.group, enable_auto_commit=False,
                                 auto_offset_reset="earliest")
        try:
            stall_at = time.monotonic() + self._every_s
            while not self._stop.is_set():
                if time.monotonic() >= stall_at:  # a slow batch: lag builds
                    self._stop.wait(self._stall_s)
                    stall_at = time.monotonic() + self._every_s
                if consumer.poll(timeout_ms=500, max_records=200):
                    consumer.commit()
        finally:
            consumer.close()


class DogStatsdCapture:
    """A UDP port that receives what a Datadog agent would: DogStatsD datagrams."""

    name = "dogstatsd"

    def __init__(self, on_datagram: Callable[[str], None] | None = None) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.5)
        self.port: int = self._socket.getsockname()[1]
        self._on_datagram = on_datagram
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.datagrams: list[str] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self._socket.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            # one datagram may carry several metrics or events, newline-separated
            for line in data.decode("utf-8", "replace").splitlines():
                self.datagrams.append(line)
                if self._on_datagram is not None:
                    self._on_datagram(line)
