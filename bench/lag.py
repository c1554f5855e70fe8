"""Time one full Kafka lag scan: 20 groups x 10 topics x 3 partitions on a private Tansu broker.

    python -m bench.lag [--groups 20] [--topics 10] [--partitions 3] [--records 200] [--scans 5]

Progress goes to stderr; the last line on stdout is one JSON object:
``pairs`` ((group, partition) rows per scan), ``scan_ms`` (median of ``--scans`` timed scans,
after one untimed scan that opens the connections), ``first_scan_ms`` (that first scan), and
``scans``. Every group sits at a different offset on every partition, so each scan reads one
record timestamp per (group, partition) as well as every log end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from collectors.kafka_lag import KafkaLagPoller, KafkaLagSettings
from watchloop.services import KafkaBroker


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lag", description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, default=20)
    parser.add_argument("--topics", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--records", type=int, default=200, help="records per partition")
    parser.add_argument("--scans", type=int, default=5)
    parser.add_argument(
        "--lag-seconds", choices=["record-timestamp", "interpolate"], default="record-timestamp"
    )
    args = parser.parse_args(argv)

    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.structs import OffsetAndMetadata, TopicPartition

    topics = [f"bench-topic-{i}" for i in range(args.topics)]
    groups = [f"bench-group-{i}" for i in range(args.groups)]
    tps = [TopicPartition(t, p) for t in topics for p in range(args.partitions)]
    with tempfile.TemporaryDirectory(prefix="bench-lag-") as workdir:
        broker = KafkaBroker(Path(workdir))
        with broker:
            bootstrap = broker.bootstrap_servers
            say(f"tansu at {bootstrap} (started in {broker.start_seconds:.2f}s)")
            admin = KafkaAdminClient(bootstrap_servers=bootstrap)
            admin.create_topics(
                {t: {"num_partitions": args.partitions, "replication_factor": 1} for t in topics}
            )
            admin.close()

            began = time.perf_counter()
            producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
            for tp in tps:
                for _ in range(args.records):
                    producer.send(tp.topic, b"x" * 100, partition=tp.partition)
            producer.flush()
            producer.close()
            say(f"produced {len(tps) * args.records} records in {time.perf_counter() - began:.1f}s")

            committed: dict[tuple[str, str, int], int] = {}
            for g, group in enumerate(groups):
                # every group at its own offset on every partition, all below the log end
                offsets = {tp: max(0, args.records - 1 - g * 7 - i % 5) for i, tp in enumerate(tps)}
                committed.update({(group, tp.topic, tp.partition): o for tp, o in offsets.items()})
                consumer = KafkaConsumer(
                    bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
                )
                consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
                consumer.close()
            say(f"committed offsets for {len(groups)} groups on {len(tps)} partitions")

            settings = KafkaLagSettings(
                bootstrap_servers=bootstrap,
                cluster="bench",
                groups_include=["bench-group-.*"],
                lag_seconds=args.lag_seconds,
            )
            poller = KafkaLagPoller(settings)
            try:
                began = time.perf_counter()
                [first] = poller.collect()
                first_ms = (time.perf_counter() - began) * 1000
                say(f"first scan (connects): {len(first)} rows in {first_ms:.1f} ms")
                timings = []
                for i in range(args.scans):
                    began = time.perf_counter()
                    [batch] = poller.collect()
                    timings.append((time.perf_counter() - began) * 1000)
                    say(f"scan {i + 1}: {len(batch)} rows in {timings[-1]:.1f} ms")
            finally:
                poller.close()
            expected = len(groups) * len(tps)
            columns = batch.columns
            got = {
                (group, topic, partition): lag
                for group, topic, partition, lag in zip(
                    columns["consumer_group"],
                    columns["topic"],
                    columns["partition"],
                    columns["lag_messages"],
                    strict=True,
                )
            }
            if got != {key: args.records - offset for key, offset in committed.items()}:
                say(f"lag differs from produced minus committed ({len(batch)} rows)")
                return 1
            say(f"lag of all {expected} pairs = produced - committed")

    result = {
        "pairs": expected,
        "scan_ms": round(statistics.median(timings), 1),
        "first_scan_ms": round(first_ms, 1),
        "scans": args.scans,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
