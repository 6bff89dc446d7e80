"""Streaming ML benchmarks (issue 4), on a throwaway PostgreSQL and tansu broker started here.

1. 1,000,000 payment events from Kafka into the PostgreSQL store WITH their offsets (exactly once),
   in events/s, against the raw confluent-kafka consume rate of the same topic on the same broker in
   the same run (the ceiling). Target: ratio >= 0.25.
2. Features for one hour of 100,000 transactions: load from the store, compute, replace the partition.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.result import BenchResult, stopwatch

EVENTS = 1_000_000  # half transactions (100,000 per hour over 5 hours), half their labels
HOURS = 5
START = datetime(2026, 2, 1, tzinfo=UTC)


def _raw_consume_rate(bootstrap: str, topic: str, expected: int) -> float:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 100,
                         "queued.max.messages.kbytes": 262_144})  # fmt: skip
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen = 0
    started = time.perf_counter()
    while seen < expected:
        seen += len(consumer.consume(num_messages=10_000, timeout=1.0))
    rate = seen / (time.perf_counter() - started)
    consumer.close()
    return rate


def run() -> list[BenchResult]:
    import psycopg

    from orchestration_platform.devstack.events import ensure_topic, generate_events, produce_events
    from orchestration_platform.devstack.services import free_port, start_kafka_broker, start_server_postgres
    from orchestration_platform.lib.ml import features
    from orchestration_platform.lib.ml.event_store import consume_batch, consumer_config

    postgres = start_server_postgres(Path("/tmp") / f"op-bench-ml-{uuid.uuid4().hex[:8]}", free_port())
    kafka = start_kafka_broker(free_port())
    try:
        topic = "payments-bench"
        ensure_topic(kafka.url, topic)
        events = generate_events(EVENTS // 2, START, START + timedelta(hours=HOURS), seed=1)
        with stopwatch() as produced:
            produce_events(kafka.url, topic, events)
        del events
        raw_rates = [_raw_consume_rate(kafka.url, topic, EVENTS) for _ in range(2)]
        raw = max(raw_rates)  # the better of two passes: the ceiling we are compared with
        stats = consume_batch(postgres.url, consumer_config(kafka.url, "bench-store"), topic,
                              max_messages=EVENTS, chunk_size=50_000)  # fmt: skip
        assert stats.transactions + stats.labels == EVENTS, stats
        hour = START + timedelta(hours=2)
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            features.ensure_feature_schema(conn)
            with stopwatch() as load:
                frame, change_seq = features.load_hour_events(conn, hour)
            with stopwatch() as compute:
                computed = features.compute_features(frame)
            with stopwatch() as write:
                written = features.write_hour_features(conn, hour, frame, computed, change_seq)
        total = load["seconds"] + compute["seconds"] + write["seconds"]
    finally:
        kafka.stop()
        postgres.stop()
    return [
        BenchResult(
            name="1M payment events into PostgreSQL with offsets (exactly once)",
            ours=round(stats.events_per_s),
            anchor=round(raw),
            unit="events/s",
            anchor_name="raw confluent-kafka consume, same broker and run",
            target=">= 0.25",
            target_ok=lambda ratio: ratio >= 0.25,
            higher_is_better=True,
            notes=f"{stats.chunks} transactions of 50k; validation (msgspec) + COPY + offsets per chunk; "
            f"raw passes {', '.join(f'{r:,.0f}' for r in raw_rates)}/s; produce took {produced['seconds']:.1f}s",
        ),
        BenchResult(
            name="features for one hour of 100,000 transactions",
            ours=round(total, 2),
            anchor=None,
            unit="s",
            anchor_name="",
            notes=f"{written.rows:,} rows: load {load['seconds']:.2f}s (with latest labels), compute "
            f"{compute['seconds']:.2f}s (pandas), replace partition {write['seconds']:.2f}s (COPY)",
        ),
    ]
