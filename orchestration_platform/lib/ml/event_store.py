"""Exactly-once consumption of payment events from Kafka into PostgreSQL.

The store, not Kafka, owns the consumer position: every chunk of messages is written (valid events,
dead letters) together with the next offset of each partition in ONE PostgreSQL transaction, and a
consumer starts from the offsets it reads back from PostgreSQL. A process killed at any point either
committed a chunk and its offsets, or neither, so a restart neither loses nor repeats an event.

Offsets and locks are per (consumer group, topic, partition): consumer i of N owns every N-th
partition, and a PostgreSQL advisory lock per partition makes sure only one process writes a
partition at a time, whatever N each process was started with. A consumer that dies drops its
connection and with it its locks; the next consumer takes the partitions over from the stored offsets.
Malformed messages go to `ml.dead_letters` with the reason and never stop the stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psycopg
from confluent_kafka import Message

from orchestration_platform.lib.ml.event_chunks import BatchStats, ChunkWriter, validate_chunk

__all__ = [
    "BatchStats",
    "ConsumerBusy",
    "consume_batch",
    "consumer_config",
    "ensure_schema",
    "owned_partitions",
    "topic_lag",
]

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
-- Offset ranges with labels whose transactions' hours are not marked yet (see mark_label_hours).
CREATE TABLE IF NOT EXISTS ml.labels_to_mark (
    topic text NOT NULL, kafka_partition int NOT NULL, low bigint NOT NULL, high bigint NOT NULL
);
"""


class ConsumerBusy(RuntimeError):
    """Every partition this consumer could take is being written by another consumer of the group."""


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create the `ml` tables if they are missing (idempotent, safe under concurrent callers).

    Every function here expects an autocommit connection: each `conn.transaction()` is then a real
    transaction that commits at its end, and no lock outlives it.
    """
    if conn.execute("SELECT to_regclass('ml.labels_to_mark')").fetchone()[0]:  # the newest table
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('ml.schema'))")
        conn.execute(SCHEMA_DDL)


def mark_label_hours(conn: psycopg.Connection) -> set:
    """Mark the hours of the transactions that stored labels refer to; returns the hours marked.

    A label's hour is its transaction's, found by one index probe per label: ~1.7 s of PostgreSQL per
    500k labels, which the consumer does not pay in its transaction. The consumer records the labels'
    offset ranges (in the same transaction as the labels), and whoever asks which hours are stale
    resolves them first, in one transaction: a label is never forgotten, at worst its hour is
    recomputed once more than needed.
    """
    with conn.transaction():
        ranges = conn.execute(
            "DELETE FROM ml.labels_to_mark RETURNING topic, kafka_partition, low, high"
        ).fetchall()
        if not ranges:
            return set()
        rows = conn.execute(
            "INSERT INTO ml.feature_hours (hour) SELECT DISTINCT date_trunc('hour', t.occurred_at) AS hour "
            "FROM ml.labels l JOIN ml.transactions t USING (transaction_id) "
            "JOIN unnest(%s::text[], %s::int[], %s::bigint[], %s::bigint[]) AS r(topic, kafka_partition, low, high) "
            "ON l.topic = r.topic AND l.kafka_partition = r.kafka_partition AND l.kafka_offset BETWEEN r.low AND r.high "
            "ORDER BY hour ON CONFLICT (hour) DO UPDATE SET change_seq = ml.feature_hours.change_seq + 1 "
            "RETURNING hour",
            [list(column) for column in zip(*ranges, strict=True)],
        ).fetchall()
    return {row[0] for row in rows}


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
        # Bigger fetches per partition: fewer round trips while catching up (bounded by the queue above).
        "max.partition.fetch.bytes": 8 << 20,
        # A partition whose local queue is full waits this long before its next fetch (librdkafka's default
        # 1 s): the consumer drains a full queue in well under that, then stalled in consume() (bench_ml).
        "fetch.queue.backoff.ms": 20,
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


def owned_partitions(partitions: list[int], consumer_index: int, consumers: int) -> list[int]:
    """The partitions consumer `consumer_index` of `consumers` owns: every `consumers`-th one, disjoint and complete."""
    if consumers < 1 or not 0 <= consumer_index < consumers:
        raise ValueError(
            f"consumer {consumer_index} of {consumers}: the index must be 0..{max(consumers - 1, 0)} and the "
            "number of consumers at least 1 (ML_CONSUMERS)"
        )
    return [p for i, p in enumerate(sorted(partitions)) if i % consumers == consumer_index]


MIN_CHUNK = 5_000
# consume() waits until it has `num_messages` or the timeout passes: with messages in hand, validate them
# rather than wait for a fetch to fill the request up.
PENDING_WAIT_S = 0.01


def chunk_target(handed: int, left: int, chunk_size: int) -> int:
    """Messages in the next chunk (one transaction): `chunk_size`, except at both ends of a batch.

    The writer thread idles until the first chunk is validated, and the last chunk's write overlaps
    nothing: so chunks start at MIN_CHUNK and double (never more than was already handed to the
    writer), and shrink to half of what is `left` towards the end. Measured in bench_ml.
    """
    return min(chunk_size, max(MIN_CHUNK, min(handed, left // 2)))


def _claim_partitions(conn: psycopg.Connection, group: str, topic: str, wanted: list[int]) -> list[int]:
    """Take the group's lock in shared mode, then each wanted partition's lock; return the partitions taken.

    Session locks: they last for the batch and vanish with the connection, so a consumer that dies
    (even by SIGKILL) frees its partitions for the next one. An exclusive hold of the group lock (an
    operator resetting offsets) keeps every consumer out.
    """
    group_key = f"ml.consumer:{group}:{topic}"
    if not conn.execute("SELECT pg_try_advisory_lock_shared(hashtext(%s))", (group_key,)).fetchone()[0]:
        raise ConsumerBusy(
            f"consumer group {group!r} on topic {topic!r} is locked exclusively by another process "
            "(an offset reset?); wait for it to finish"
        )
    taken = [
        partition
        for partition in wanted
        if conn.execute(
            "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (f"{group_key}:{partition}",)
        ).fetchone()[0]
    ]
    if wanted and not taken:
        _release(conn, group, topic, [])
        raise ConsumerBusy(
            f"partitions {wanted} of topic {topic!r} (consumer group {group!r}) are all being consumed by other "
            "processes; wait for them to finish (one consumer per partition writes at a time)"
        )
    return taken


def _release(conn: psycopg.Connection, group: str, topic: str, partitions: list[int]) -> None:
    group_key = f"ml.consumer:{group}:{topic}"
    for partition in partitions:
        conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (f"{group_key}:{partition}",))
    conn.execute("SELECT pg_advisory_unlock_shared(hashtext(%s))", (group_key,))


def consume_batch(
    postgres_url: str,
    kafka_config: dict,
    topic: str,
    *,
    consumer_index: int = 0,
    consumers: int = 1,
    max_messages: int = 100_000,
    chunk_size: int = 20_000,
    idle_timeout_s: float = 2.0,
    max_seconds: float = 60.0,
    progress: Callable[[BatchStats], None] | None = None,
) -> BatchStats:
    """Consume at most `max_messages` (up to the end of the topic as it was at start) into the store.

    Consumer `consumer_index` of `consumers` reads only the partitions it owns (`owned_partitions`),
    and of those only the ones no other consumer of the group is writing (a PostgreSQL advisory lock
    per group, topic and partition); `stats.partitions` says which. N consumers (runs, processes, pods)
    with the same N and different indexes therefore split a topic without ever writing the same event.

    A batch also ends after `max_seconds` once past the start's end: a live stream never goes idle,
    and the next batch carries on from the stored offsets.

    `kafka_config` is `consumer_config(...)`; its `group.id` names the position kept in PostgreSQL.
    Each chunk of `chunk_size` messages commits with its offsets, so a long batch makes progress
    that a crash cannot undo. Raises `ConsumerBusy` if all of its partitions are being written.
    """
    from confluent_kafka import Consumer

    if max_messages <= 0 or chunk_size <= 0 or max_seconds <= 0:
        raise ValueError(
            f"max_messages={max_messages}, chunk_size={chunk_size}, max_seconds={max_seconds}: all must be positive"
        )
    group = kafka_config["group.id"]
    stats = BatchStats()
    started = time.perf_counter()
    with psycopg.connect(
        postgres_url,
        application_name="ml-events-consumer",
        autocommit=True,
        # A consumer cut off from the network loses its partition locks within ~30 s, not hours.
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=5,
        keepalives_count=4,
    ) as conn:
        ensure_schema(conn)
        consumer = Consumer(kafka_config)
        try:
            wanted = owned_partitions(topic_partitions(consumer, topic, 10), consumer_index, consumers)
            partitions = _claim_partitions(conn, group, topic, wanted)
            try:
                stats.owned, stats.partitions = wanted, partitions
                if partitions:
                    _consume_partitions(
                        conn, consumer, group, topic, partitions, stats,
                        max_messages=max_messages, chunk_size=chunk_size, idle_timeout_s=idle_timeout_s,
                        max_seconds=max_seconds, progress=progress,
                    )  # fmt: skip
            finally:
                _release(conn, group, topic, partitions)
        finally:
            consumer.close()
    stats.seconds = time.perf_counter() - started
    return stats


def _consume_partitions(
    conn: psycopg.Connection,
    consumer,
    group: str,
    topic: str,
    partitions: list[int],
    stats: BatchStats,
    *,
    max_messages: int,
    chunk_size: int,
    idle_timeout_s: float,
    max_seconds: float,
    progress: Callable[[BatchStats], None] | None,
) -> None:
    """The consume loop over partitions this process holds the locks of; offsets are read after locking."""
    from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

    offsets = stored_offsets(conn, group, topic)
    end = {}
    for partition in partitions:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        end[partition] = high
    consumer.assign([TopicPartition(topic, p, offsets.get(p, OFFSET_BEGINNING)) for p in partitions])
    position = {p: offsets.get(p, 0) for p in partitions}
    pending: list = []
    writer: ChunkWriter | None = ChunkWriter(conn, group, topic, stats, progress)
    try:
        idle_since = time.monotonic()
        deadline = time.monotonic() + max_seconds
        while stats.consumed < max_messages:
            caught_up = all(position[p] >= end[p] for p in partitions)
            if caught_up and time.monotonic() > deadline:
                break  # past the start's end and out of time: the live tail is the next batch's
            to_end = sum(max(end[p] - position[p], 0) for p in partitions)
            left = len(pending) + min(max_messages - stats.consumed, to_end)
            target = chunk_target(stats.consumed - len(pending), left, chunk_size)
            batch = consumer.consume(
                num_messages=max(min(10_000, max_messages - stats.consumed, target - len(pending)), 1),
                timeout=0.2 if caught_up else PENDING_WAIT_S if pending else 0.5,
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
            if len(pending) >= target:
                writer.put(validate_chunk(topic, pending, dict(position), stats))
                pending = []
        if pending:
            writer.put(validate_chunk(topic, pending, dict(position), stats))
        writer.close()
        writer = None
        stats.lag = sum(max(end[p] - position[p], 0) for p in partitions)
    finally:
        if writer is not None:
            writer.abort()
