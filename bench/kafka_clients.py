"""Which Python Kafka client should consume inference logs? Measured, not assumed.

    python -m bench.kafka_clients [--messages N] [--records-per-message K]

A real Tansu broker on loopback holds N messages of K JSON records each (JSON Lines); each
client consumes them all in a consumer group (no store involved), and the result is the
records per second each client delivers to Python. kafka-python is what the collector uses;
confluent-kafka (librdkafka) is the alternative the issue asked to measure, when installed.
"""

from __future__ import annotations

import json
import time
from typing import Any

from bench._common import (
    LogGenerator,
    base_parser,
    emit_result,
    log,
    parse_args,
    per_second,
    temporary_directory,
)
from watchloop.services import KafkaBroker


def _produce(broker: KafkaBroker, topic: str, messages: int, per_message: int) -> None:
    from kafka import KafkaAdminClient, KafkaProducer

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    admin.create_topics({topic: {"num_partitions": 3, "replication_factor": 1}})
    admin.close()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=20,
                             batch_size=1_000_000, max_request_size=16_000_000)
    generator = LogGenerator(7, messages * per_message, 0, 3_600_000)
    for _ in range(messages):
        lines = [json.dumps(r).encode() for r in generator.batch(per_message)]
        producer.send(topic, b"\n".join(lines))
    producer.flush()
    producer.close()


def _kafka_python(broker: KafkaBroker, topic: str, messages: int) -> float:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap_servers,
                             group_id="bench-kafka-python", auto_offset_reset="earliest",
                             enable_auto_commit=False, session_timeout_ms=6000,
                             fetch_max_wait_ms=100, max_partition_fetch_bytes=8 * 1024 * 1024)
    return _drain(lambda: sum(len(v) for v in consumer.poll(timeout_ms=100,
                                                             max_records=5000).values()),
                  messages, consumer.close)


def _confluent(broker: KafkaBroker, topic: str, messages: int) -> float | None:
    try:
        from confluent_kafka import Consumer
    except ImportError:
        log("confluent-kafka is not installed: skipped")
        return None
    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers,
                         "group.id": "bench-confluent", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "session.timeout.ms": 6000})
    consumer.subscribe([topic])

    def poll() -> int:
        return sum(1 for m in consumer.consume(num_messages=5000, timeout=0.1)
                   if m.error() is None)

    return _drain(poll, messages, consumer.close)


def _drain(poll: Any, messages: int, close: Any) -> float:
    """Messages per second from the first delivered message to the last (the join excluded)."""
    seen = first = 0
    started = 0.0
    while seen < messages:
        got = poll()
        if got and not started:
            started, first = time.perf_counter(), got
        seen += got
    elapsed = time.perf_counter() - started
    close()
    return per_second(seen - first, elapsed)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], rows=20_000, batch=1, quick_rows=2_000)
    parser.add_argument("--records-per-message", type=int, default=1)
    args = parse_args(parser)
    messages, per_message = args.rows, args.records_per_message
    with temporary_directory("watchloop-bench-kafka-") as workdir:
        broker = KafkaBroker(workdir / "kafka").start()
        try:
            _produce(broker, "logs", messages, per_message)
            log(f"produced {messages:,} messages of {per_message} records")
            python_rate = _kafka_python(broker, "logs", messages)
            log(f"kafka-python: {python_rate:,.0f} messages/s")
            confluent_rate = _confluent(broker, "logs", messages)
            if confluent_rate is not None:
                log(f"confluent-kafka: {confluent_rate:,.0f} messages/s")
        finally:
            broker.stop()
    emit_result({
        "messages": messages,
        "records_per_message": per_message,
        "kafka_python_records_per_s": round(python_rate * per_message),
        "confluent_records_per_s": None if confluent_rate is None
        else round(confluent_rate * per_message),
        "ratio": None if confluent_rate is None else round(confluent_rate / python_rate, 2),
    })


if __name__ == "__main__":
    main()
