"""Exactly-once consumption of payment events from Kafka into PostgreSQL.

The store, not Kafka, owns the consumer position: every chunk of messages is written (valid events,
dead letters) together with the next offset of each partition in ONE PostgreSQL transaction, and a
consumer starts from the offsets it reads back from PostgreSQL. A process killed at any point either
committed a chunk and its offsets, or neither, so a restart neither loses nor repeats an event.
Malformed messages go to `ml.dead_letters` with the reason and never stop the stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psycopg
from confluent_kafka import Message

from orchestration_platform.lib.ml.event_chunks import BatchStats, ChunkWriter, validate_chunk

__all__ = ["BatchStats", "ConsumerBusy", "consume_batch", "consumer_config", "ensure_schema", "topic_lag"]

log = logging.getLogger(__name__)

SCHEMA_DDL = """
CREATE SCHEMA IF NOT EXISTS ml;
CREATE TABLE IF NOT EXISTS ml.transactions (
    topic text NOT NULL, kafka_partition int NOT NULL, kafka_offset bigint NOT NULL,
    event_id text NOT NULL, transaction_id text NOT NULL, occurred_at timestamptz NOT NULL,
    card_id text NOT NULL, merchant_id text NOT NULL, merchant_category text NOT NULL,
    amount double precision NOT NULL, currency text NOT NULL, card_country text NOT NULL,
    merchant_country text NOT NULL, channel text NOT NULL, received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition, kafka_offset)
);
CREATE INDEX IF NOT EXISTS transactions_occurred_at ON ml.transactions (occurred_at);
CREATE INDEX IF NOT EXISTS transactions_transaction_id ON ml.transactions (transaction_id);
CREATE TABLE IF NOT EXISTS ml.labels (
    topic text NOT NULL, kafka_partition int NOT NULL, kafka_offset bigint NOT NULL,
    event_id text NOT NULL, transaction_id text NOT NULL, is_fraud boolean NOT NULL,
    labeled_at timestamptz NOT NULL, received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition, kafka_offset)
);
CREATE INDEX IF NOT EXISTS labels_transaction_id ON ml.labels (transaction_id);
CREATE TABLE IF NOT EXISTS ml.dead_letters (
    topic text NOT NULL, kafka_partition int NOT NULL, kafka_offset bigint NOT NULL,
    kafka_key bytea, payload bytea, reason text NOT NULL, received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, kafka_partition, kafka_offset)
);
CREATE TABLE IF NOT EXISTS ml.consumer_offsets (
    consumer_group text NOT NULL, topic text NOT NULL, kafka_partition int NOT NULL,
    next_offset bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, kafka_partition)
);
-- An hour whose events changed after its features were computed has change_seq > computed_seq.
CREATE TABLE IF NOT EXISTS ml.feature_hours (
    hour timestamptz PRIMARY KEY, change_seq bigint NOT NULL DEFAULT 1,
    computed_seq bigint, computed_at timestamptz
);
"""


class ConsumerBusy(RuntimeError):
    """Another consumer holds this group's lock: one consumer per group and topic writes at a time."""


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create the `ml` tables if they are missing (idempotent, safe under concurrent callers).

    Every function here expects an autocommit connection: each `conn.transaction()` is then a real
    transaction that commits at its end, and no lock outlives it.
    """
    if conn.execute("SELECT to_regclass('ml.feature_hours')").fetchone()[0]:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('ml.schema'))")
        conn.execute(SCHEMA_DDL)


def stored_offsets(conn: psycopg.Connection, group: str, topic: str) -> dict[int, int]:
    rows = conn.execute(
        "SELECT kafka_partition, next_offset FROM ml.consumer_offsets WHERE consumer_group = %s AND topic = %s",
        (group, topic),
    ).fetchall()
    return {partition: offset for partition, offset in rows}


def consumer_config(bootstrap_servers: str, group: str, extra: dict | None = None) -> dict:
    """librdkafka settings for a store-owned position: no auto commit, no offset store."""
    return {
        "bootstrap.servers": bootstrap_servers,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        "fetch.wait.max.ms": 100,
        "queued.max.messages.kbytes": 262_144,
        **(extra or {}),
    }


def topic_partitions(consumer, topic: str, timeout_s: float) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=timeout_s)
    info = metadata.topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        reason = info.error if info is not None and info.error is not None else "no partitions"
        raise RuntimeError(
            f"Kafka topic {topic!r} is not available ({reason}): create it or set the events topic "
            "(ML_EVENTS_TOPIC) to an existing one"
        )
    return sorted(info.partitions)


def topic_lag(
    consumer, conn: psycopg.Connection, group: str, topic: str, timeout_s: float = 5.0
) -> dict[int, int]:
    """Messages per partition that the store has not consumed yet (high watermark - stored offset)."""
    from confluent_kafka import TopicPartition

    offsets = stored_offsets(conn, group, topic)
    lag = {}
    for partition in topic_partitions(consumer, topic, timeout_s):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
        lag[partition] = max(high - max(offsets.get(partition, low), low), 0)
    return lag


def consume_batch(
    postgres_url: str,
    kafka_config: dict,
    topic: str,
    *,
    max_messages: int = 100_000,
    chunk_size: int = 20_000,
    idle_timeout_s: float = 2.0,
    max_seconds: float = 60.0,
    progress: Callable[[BatchStats], None] | None = None,
) -> BatchStats:
    """Consume at most `max_messages` (up to the end of the topic as it was at start) into the store.

    A batch also ends after `max_seconds` once past the start's end: a live stream never goes idle,
    and the next batch carries on from the stored offsets.

    `kafka_config` is `consumer_config(...)`; its `group.id` names the position kept in PostgreSQL.
    Each chunk of `chunk_size` messages commits with its offsets, so a long batch makes progress
    that a crash cannot undo. Raises `ConsumerBusy` if another consumer of the group is writing.
    """
    from confluent_kafka import (
        OFFSET_BEGINNING,
        Consumer,
        KafkaError,
        KafkaException,
        TopicPartition,
    )

    if max_messages <= 0 or chunk_size <= 0 or max_seconds <= 0:
        raise ValueError(
            f"max_messages={max_messages}, chunk_size={chunk_size}, max_seconds={max_seconds}: all must be positive"
        )
    group = kafka_config["group.id"]
    stats = BatchStats()
    started = time.perf_counter()
    with psycopg.connect(postgres_url, application_name="ml-events-consumer", autocommit=True) as conn:
        ensure_schema(conn)
        lock_key = f"ml.consumer:{group}:{topic}"
        if not conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (lock_key,)).fetchone()[0]:
            raise ConsumerBusy(
                f"consumer group {group!r} on topic {topic!r} is already being consumed by another process; "
                "wait for it to finish (one consumer per group writes at a time)"
            )
        consumer = Consumer(kafka_config)
        writer: ChunkWriter | None = None
        try:
            partitions = topic_partitions(consumer, topic, 10)
            offsets = stored_offsets(conn, group, topic)
            end = {}
            for partition in partitions:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                end[partition] = high
            consumer.assign([TopicPartition(topic, p, offsets.get(p, OFFSET_BEGINNING)) for p in partitions])
            position = {p: offsets.get(p, 0) for p in partitions}
            pending: list = []
            writer = ChunkWriter(conn, group, topic, stats, progress)
            idle_since = time.monotonic()
            deadline = time.monotonic() + max_seconds
            while stats.consumed < max_messages:
                caught_up = all(position[p] >= end[p] for p in partitions)
                if caught_up and time.monotonic() > deadline:
                    break  # past the start's end and out of time: the live tail is the next batch's
                batch = consumer.consume(
                    num_messages=min(10_000, max_messages - stats.consumed), timeout=0.2 if caught_up else 0.5
                )
                if not batch:
                    # Past the start's high watermark and nothing more arrives: the batch is done. (A watermark
                    # can lag the real end: tansu counts a record batch as one offset, so we also wait for idle.)
                    if caught_up or time.monotonic() - idle_since > idle_timeout_s:
                        break
                    continue
                idle_since = time.monotonic()
                if any(map(Message.error, batch)):
                    for message in batch:
                        error = message.error()
                        if error is not None and error.code() != KafkaError._PARTITION_EOF:
                            raise KafkaException(error)
                    batch = [message for message in batch if message.error() is None]
                # The last message of each partition in the batch gives its next position.
                for partition, offset in dict(
                    zip(map(Message.partition, batch), map(Message.offset, batch), strict=True)
                ).items():
                    position[partition] = offset + 1
                pending.extend(batch)
                stats.consumed += len(batch)
                if len(pending) >= chunk_size:
                    writer.put(validate_chunk(topic, pending, dict(position)))
                    pending = []
            if pending:
                writer.put(validate_chunk(topic, pending, dict(position)))
            writer.close()
            writer = None
            stats.lag = sum(max(end[p] - position[p], 0) for p in partitions)
        finally:
            if writer is not None:
                writer.abort()
            consumer.close()
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (lock_key,))
    stats.seconds = time.perf_counter() - started
    return stats
