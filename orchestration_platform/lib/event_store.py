"""Exactly-once consumption of payment events from Kafka into PostgreSQL.

The store, not Kafka, owns the consumer position: every chunk of messages is written (valid events,
dead letters) together with the next offset of each partition in ONE PostgreSQL transaction, and a
consumer starts from the offsets it reads back from PostgreSQL. A process killed at any point either
committed a chunk and its offsets, or neither, so a restart neither loses nor repeats an event.
Malformed messages go to `ml.dead_letters` with the reason and never stop the stream.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import operator
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import compress, repeat

import msgspec
import psycopg
from confluent_kafka import Message

from orchestration_platform.lib.payment_events import (
    MAX_MESSAGE_BYTES,
    NUL_ESCAPE,
    InvalidEvent,
    LabelEvent,
    PaymentEvent,
    parse_event,
)

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

_CHUNK_DECODER = msgspec.json.Decoder(list[PaymentEvent])
_RAW_DECODER = msgspec.json.Decoder(list[msgspec.Raw])

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


@dataclass
class BatchStats:
    """What one bounded consumption did; `lag` is what is left in the topic after it."""

    consumed: int = 0
    transactions: int = 0
    labels: int = 0
    dead_letters: int = 0
    chunks: int = 0
    seconds: float = 0.0
    lag: int = 0
    hours: set[datetime] = field(default_factory=set)
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.consumed / self.seconds if self.seconds else 0.0


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


def topic_lag(consumer, conn: psycopg.Connection, group: str, topic: str, timeout_s: float = 5.0) -> dict[int, int]:
    """Messages per partition that the store has not consumed yet (high watermark - stored offset)."""
    from confluent_kafka import TopicPartition

    offsets = stored_offsets(conn, group, topic)
    lag = {}
    for partition in topic_partitions(consumer, topic, timeout_s):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
        lag[partition] = max(high - max(offsets.get(partition, low), low), 0)
    return lag


_TRANSACTION_COLUMNS = (
    "event_id, transaction_id, occurred_at, card_id, merchant_id, merchant_category, amount, currency, "
    "card_country, merchant_country, channel, topic, kafka_partition, kafka_offset"
)  # the field order of TransactionEvent, then the Kafka position
_LABEL_COLUMNS = "event_id, transaction_id, is_fraud, labeled_at, topic, kafka_partition, kafka_offset"
_MARK_TRANSACTION_HOURS = """
INSERT INTO ml.feature_hours (hour)
SELECT DISTINCT date_trunc('hour', occurred_at) FROM ml.transactions
WHERE topic = %s AND kafka_partition = %s AND kafka_offset BETWEEN %s AND %s
ON CONFLICT (hour) DO UPDATE SET change_seq = ml.feature_hours.change_seq + 1
"""
_MARK_LABEL_HOURS = """
INSERT INTO ml.feature_hours (hour)
SELECT DISTINCT date_trunc('hour', t.occurred_at)
FROM ml.labels l JOIN ml.transactions t USING (transaction_id)
WHERE l.topic = %s AND l.kafka_partition = %s AND l.kafka_offset BETWEEN %s AND %s
ON CONFLICT (hour) DO UPDATE SET change_seq = ml.feature_hours.change_seq + 1
"""


@dataclass
class _Chunk:
    """One transaction's worth: CSV rows for COPY, the offset range per partition, dead letters."""

    transactions_csv: str
    labels_csv: str
    transactions: int
    labels: int
    ranges: dict[int, tuple[int, int]]
    dead: list[tuple]
    next_offsets: dict[int, int]


def _csv(events: Iterable, topic: str, partitions: Iterable[int], offsets: Iterable[int]) -> str:
    buffer = io.StringIO()
    # Struct fields + (topic, partition, offset), joined by C-level iterators: no per-event Python code.
    csv.writer(buffer, lineterminator="\n").writerows(
        map(operator.add, map(msgspec.structs.astuple, events), zip(repeat(topic), partitions, offsets, strict=True))
    )
    return buffer.getvalue()


def _validate_chunk(topic: str, messages: list, next_offsets: dict[int, int]) -> _Chunk:
    values = [m.value() for m in messages]
    partitions = list(map(Message.partition, messages))
    offsets = list(map(Message.offset, messages))
    dead: list[tuple] = []
    events = None
    try:
        # Fast path: the whole chunk as one JSON array, checked in C; element i must be message i.
        buffer = b"[" + b",".join(values) + b"]"
        if NUL_ESCAPE not in buffer and max(map(len, values)) <= MAX_MESSAGE_BYTES:
            events = _CHUNK_DECODER.decode(buffer)
            if list(map(len, _RAW_DECODER.decode(buffer))) != list(map(len, values)):
                events = None
    except (TypeError, msgspec.ValidationError, msgspec.DecodeError):
        events = None
    if events is None:  # some message is bad: validate one by one, dead-letter the bad ones
        events, keep = [], []
        for message, value in zip(messages, values, strict=True):
            try:
                events.append(parse_event(value))
                keep.append(True)
            except InvalidEvent as error:
                dead.append((topic, message.partition(), message.offset(), message.key(), value, error.reason))
                keep.append(False)
        partitions = list(compress(partitions, keep))
        offsets = list(compress(offsets, keep))
    is_label = [type(event) is LabelEvent for event in events]
    is_transaction = [not flag for flag in is_label]
    ranges: dict[int, tuple[int, int]] = {}
    for partition in set(partitions):
        mine = offsets if len(ranges) == 0 and len(set(partitions)) == 1 else [
            o for p, o in zip(partitions, offsets, strict=True) if p == partition
        ]
        ranges[partition] = (min(mine), max(mine))
    return _Chunk(
        transactions_csv=_csv(
            compress(events, is_transaction), topic, compress(partitions, is_transaction), compress(offsets, is_transaction)
        ),
        labels_csv=_csv(compress(events, is_label), topic, compress(partitions, is_label), compress(offsets, is_label)),
        transactions=is_transaction.count(True),
        labels=is_label.count(True),
        ranges=ranges,
        dead=dead,
        next_offsets=next_offsets,
    )


def _write_chunk(conn: psycopg.Connection, group: str, topic: str, chunk: _Chunk, stats: BatchStats) -> None:
    with conn.transaction():
        cursor = conn.cursor()
        if chunk.transactions:
            with cursor.copy(f"COPY ml.transactions ({_TRANSACTION_COLUMNS}) FROM STDIN (FORMAT csv)") as copy:
                copy.write(chunk.transactions_csv)
            for partition, (low, high) in chunk.ranges.items():
                cursor.execute(_MARK_TRANSACTION_HOURS, (topic, partition, low, high))
        if chunk.labels:
            with cursor.copy(f"COPY ml.labels ({_LABEL_COLUMNS}) FROM STDIN (FORMAT csv)") as copy:
                copy.write(chunk.labels_csv)
            for partition, (low, high) in chunk.ranges.items():
                cursor.execute(_MARK_LABEL_HOURS, (topic, partition, low, high))
        if chunk.dead:
            with cursor.copy(
                "COPY ml.dead_letters (topic, kafka_partition, kafka_offset, kafka_key, payload, reason) FROM STDIN"
            ) as copy:
                for row in chunk.dead:
                    copy.write_row(row)
        cursor.executemany(
            "INSERT INTO ml.consumer_offsets (consumer_group, topic, kafka_partition, next_offset) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (consumer_group, topic, kafka_partition) "
            "DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
            [(group, topic, p, o) for p, o in sorted(chunk.next_offsets.items())],
        )
    stats.transactions += chunk.transactions
    stats.labels += chunk.labels
    stats.dead_letters += len(chunk.dead)
    for row in chunk.dead:
        kind = row[5].split(":")[0]
        stats.dead_letter_reasons[kind] = stats.dead_letter_reasons.get(kind, 0) + 1
    stats.chunks += 1


class _ChunkWriter:
    """Writes chunks in order on one thread, so validating chunk N+1 overlaps PostgreSQL storing chunk N."""

    def __init__(self, conn: psycopg.Connection, group: str, topic: str, stats: BatchStats, progress) -> None:
        self._queue: queue.Queue[_Chunk | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._args = (conn, group, topic)
        self._stats, self._progress = stats, progress
        self._thread = threading.Thread(target=self._run, name="ml-events-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is not None:
                continue
            try:
                _write_chunk(*self._args, chunk, self._stats)
                if self._progress:
                    self._progress(self._stats)
            except BaseException as error:  # surfaced to the consumer thread by put()/close()
                self._error = error

    def put(self, chunk: _Chunk) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def abort(self) -> None:
        """Stop after the chunk being written (if any); chunks not yet written are dropped, offsets with them."""
        self._error = self._error or RuntimeError("consumer stopped")
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._queue.put(None)
        self._thread.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def consume_batch(
    postgres_url: str,
    kafka_config: dict,
    topic: str,
    *,
    max_messages: int = 100_000,
    chunk_size: int = 20_000,
    idle_timeout_s: float = 2.0,
    progress: Callable[[BatchStats], None] | None = None,
) -> BatchStats:
    """Consume at most `max_messages` (up to the end of the topic as it was at start) into the store.

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

    if max_messages <= 0 or chunk_size <= 0:
        raise ValueError(f"max_messages={max_messages}, chunk_size={chunk_size}: both must be positive")
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
        writer: _ChunkWriter | None = None
        try:
            partitions = topic_partitions(consumer, topic, 10)
            offsets = stored_offsets(conn, group, topic)
            end = {}
            for partition in partitions:
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                end[partition] = high
            consumer.assign(
                [TopicPartition(topic, p, offsets.get(p, OFFSET_BEGINNING)) for p in partitions]
            )
            position = {p: offsets.get(p, 0) for p in partitions}
            pending: list = []
            writer = _ChunkWriter(conn, group, topic, stats, progress)
            idle_since = time.monotonic()
            while stats.consumed < max_messages:
                caught_up = all(position[p] >= end[p] for p in partitions)
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
                for partition, offset in dict(zip(map(Message.partition, batch), map(Message.offset, batch), strict=True)).items():
                    position[partition] = offset + 1
                pending.extend(batch)
                stats.consumed += len(batch)
                if len(pending) >= chunk_size:
                    writer.put(_validate_chunk(topic, pending, dict(position)))
                    pending = []
            if pending:
                writer.put(_validate_chunk(topic, pending, dict(position)))
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
