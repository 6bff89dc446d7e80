"""One chunk of Kafka messages into PostgreSQL: validate in bulk, COPY, mark hours, store offsets.

Used by `event_store.consume_batch`. Validation of a whole chunk is one msgspec call over one JSON
array (C speed); only a chunk with a bad message is re-validated message by message, so poison goes
to the dead-letter table without slowing the healthy stream. Chunks are written in order on one
writer thread, so validating the next chunk overlaps PostgreSQL storing this one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import operator
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import compress, repeat

import msgspec
import psycopg
from confluent_kafka import Message

from orchestration_platform.lib.ml.payment_events import (
    MAX_MESSAGE_BYTES,
    NUL_ESCAPE,
    InvalidEvent,
    LabelEvent,
    PaymentEvent,
    parse_event,
)

_CHUNK_DECODER = msgspec.json.Decoder(list[PaymentEvent])
_RAW_DECODER = msgspec.json.Decoder(list[msgspec.Raw])
_ROWS_ENCODER = msgspec.json.Encoder()
_OCCURRED_AT = operator.attrgetter("occurred_at")
_FLOOR = operator.floordiv


@dataclass
class BatchStats:
    """What one bounded consumption did; `lag` is what is left in the topic after it."""

    consumed: int = 0
    transactions: int = 0
    labels: int = 0
    dead_letters: int = 0
    chunks: int = 0
    seconds: float = 0.0
    # Where the time went: validating + building COPY rows (consumer thread), storing chunks in PostgreSQL
    # (writer thread, overlapped), and the consumer thread waiting for the writer.
    validate_seconds: float = 0.0
    store_seconds: float = 0.0
    wait_seconds: float = 0.0
    lag: int = 0
    owned: list[int] = field(default_factory=list)  # the partitions this consumer owns (i of N)
    partitions: list[int] = field(default_factory=list)  # of those, the ones it held (others were busy)
    hours: set[datetime] = field(default_factory=set)
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.consumed / self.seconds if self.seconds else 0.0


_TRANSACTION_COLUMNS = (
    "event_id, transaction_id, occurred_at, card_id, merchant_id, merchant_category, amount, currency, "
    "card_country, merchant_country, channel, topic, kafka_partition, kafka_offset"
)  # the field order of TransactionEvent, then the Kafka position
_LABEL_COLUMNS = "event_id, transaction_id, is_fraud, labeled_at, topic, kafka_partition, kafka_offset"
_MARK_HOURS = (
    "INSERT INTO ml.feature_hours (hour) SELECT hour FROM unnest(%s::timestamptz[]) AS changed(hour) ORDER BY hour "
    "ON CONFLICT (hour) DO UPDATE SET change_seq = ml.feature_hours.change_seq + 1 RETURNING hour"
)


def _mark_hours(cursor: psycopg.Cursor, topic: str, chunk: Chunk) -> set[datetime]:
    """Mark the hours this chunk's transactions changed, in ONE statement and in hour order; leave the
    labels' offset ranges for `event_store.mark_label_hours` (their hours need a lookup per label).

    The hours (UTC) come from the validated events, not from reading the rows back: reading 25k rows
    per chunk back by offset range cost PostgreSQL ~0.7 s of CPU per 1M events (bench_ml).
    Consumers of other partitions mark the same hours concurrently: taking the row locks in one sorted
    pass means two of them can wait for each other, never deadlock.
    """
    if chunk.labels:
        cursor.executemany(
            "INSERT INTO ml.labels_to_mark (topic, kafka_partition, low, high) VALUES (%s, %s, %s, %s)",
            [(topic, partition, low, high) for partition, (low, high) in sorted(chunk.ranges.items())],
        )
    if not chunk.hours:
        return set()
    return {row[0] for row in cursor.execute(_MARK_HOURS, (chunk.hours,))}


def _utc_hours(events: Iterable) -> list[datetime]:
    """The distinct UTC hours (sorted) in which these transactions occurred: all C-level iteration."""
    seconds = map(datetime.timestamp, map(_OCCURRED_AT, events))
    return [datetime.fromtimestamp(hour * 3600, UTC) for hour in sorted(set(map(_FLOOR, seconds, repeat(3600))))]


@dataclass
class Chunk:
    """One transaction's worth: CSV rows for COPY, the offset range per partition, dead letters."""

    transactions_csv: list  # COPY rows in parts (bytes-like), one per slice; a part has no final newline
    labels_csv: list
    transactions: int
    labels: int
    ranges: dict[int, tuple[int, int]]
    dead: list[tuple]
    hours: list[datetime]  # the UTC hours of the transactions, sorted
    next_offsets: dict[int, int]


def _csv(
    events: Iterable, topic: str, partitions: Iterable[int], offsets: Iterable[int]
) -> bytes | memoryview:
    """COPY rows (CSV) of validated events, each followed by (topic, partition, offset).

    Fast path: one msgspec encode of all rows as JSON arrays. A JSON array of strings, numbers and
    booleans without backslash escapes is, between its brackets, a valid CSV line (strings double-quoted,
    no quote inside), and RFC 3339 instants are what `timestamptz` reads. Any escape, or a `],[` inside a
    value, falls back to the csv module (~6x slower, same rows).
    """
    rows = list(
        map(
            operator.add,
            map(msgspec.structs.astuple, events),
            zip(repeat(topic), partitions, offsets, strict=True),
        )
    )
    if not rows:
        return b""
    encoded = _ROWS_ENCODER.encode(rows)
    if b"\\" not in encoded:
        lines = encoded.replace(b"],[", b"\n")
        if lines.count(b"\n") == len(rows) - 1:  # no newline in a value (escaped), so no `],[` in one
            return memoryview(lines)[2:-2]  # without the last newline (the writer adds it): no copy here
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return memoryview(buffer.getvalue().encode())[:-1]


def validate_chunk(
    topic: str, messages: list, next_offsets: dict[int, int], stats: BatchStats | None = None
) -> Chunk:
    started = time.perf_counter()
    chunk = _validate_chunk(topic, messages, next_offsets)
    if stats is not None:
        stats.validate_seconds += time.perf_counter() - started
    return chunk


# Messages validated per C call. A call into msgspec holds the GIL throughout (50 ms for 50k events), and the
# writer thread needs the GIL each time the socket to PostgreSQL drains: slices keep PostgreSQL fed.
SLICE = 5_000


def _validate_chunk(topic: str, messages: list, next_offsets: dict[int, int]) -> Chunk:
    chunk = Chunk([], [], 0, 0, {}, [], [], next_offsets)
    hours: set[datetime] = set()
    for start in range(0, len(messages), SLICE):
        part = _validate_slice(topic, messages[start : start + SLICE])
        if part.transactions:
            chunk.transactions_csv += part.transactions_csv
        if part.labels:
            chunk.labels_csv += part.labels_csv
        chunk.transactions += part.transactions
        chunk.labels += part.labels
        for partition, (low, high) in part.ranges.items():
            known = chunk.ranges.get(partition, (low, high))
            chunk.ranges[partition] = (min(known[0], low), max(known[1], high))
        chunk.dead += part.dead
        hours.update(part.hours)
    chunk.hours = sorted(hours)
    return chunk


def _validate_slice(topic: str, messages: list) -> Chunk:
    values = [m.value() for m in messages]
    partitions = list(map(Message.partition, messages))
    offsets = list(map(Message.offset, messages))
    dead: list[tuple] = []
    events = None
    try:
        # Fast path: the whole chunk as one JSON array, checked in C; element i must be message i.
        framed = values.copy()  # brackets on the first and last value: the join is the only copy of the chunk
        framed[0] = b"[" + framed[0]
        framed[-1] = framed[-1] + b"]"  # the same value when there is one
        buffer = b",".join(framed)
        # (A backslash is rare in events: memchr for it first, the 6-byte search only when there is one.)
        clean = b"\\" not in buffer or NUL_ESCAPE not in buffer
        if clean and max(map(len, values)) <= MAX_MESSAGE_BYTES:
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
                dead.append(
                    (topic, message.partition(), message.offset(), message.key(), value, error.reason)
                )
                keep.append(False)
        partitions = list(compress(partitions, keep))
        offsets = list(compress(offsets, keep))
    is_label = [type(event) is LabelEvent for event in events]
    is_transaction = [not flag for flag in is_label]
    # Offsets grow within a partition, so its first and last message in the chunk bound its range.
    first = dict(zip(reversed(partitions), reversed(offsets), strict=True))
    last = dict(zip(partitions, offsets, strict=True))
    ranges = {partition: (first[partition], last[partition]) for partition in last}
    return Chunk(
        transactions_csv=[
            _csv(
                compress(events, is_transaction),
                topic,
                compress(partitions, is_transaction),
                compress(offsets, is_transaction),
            )
        ],
        labels_csv=[
            _csv(compress(events, is_label), topic, compress(partitions, is_label), compress(offsets, is_label))
        ],
        transactions=is_transaction.count(True),
        labels=is_label.count(True),
        ranges=ranges,
        dead=dead,
        hours=_utc_hours(compress(events, is_transaction)),
        next_offsets={},
    )


def write_chunk(conn: psycopg.Connection, group: str, topic: str, chunk: Chunk, stats: BatchStats) -> None:
    started = time.perf_counter()
    with conn.transaction():
        cursor = conn.cursor()
        if chunk.transactions:
            with cursor.copy(
                f"COPY ml.transactions ({_TRANSACTION_COLUMNS}) FROM STDIN (FORMAT csv)"
            ) as copy:
                for part in chunk.transactions_csv:
                    copy.write(part)
                    copy.write(b"\n")
        if chunk.labels:
            with cursor.copy(f"COPY ml.labels ({_LABEL_COLUMNS}) FROM STDIN (FORMAT csv)") as copy:
                for part in chunk.labels_csv:
                    copy.write(part)
                    copy.write(b"\n")
        hours = _mark_hours(cursor, topic, chunk)
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
    stats.hours |= hours
    stats.labels += chunk.labels
    stats.dead_letters += len(chunk.dead)
    for row in chunk.dead:
        kind = row[5].split(":")[0]
        stats.dead_letter_reasons[kind] = stats.dead_letter_reasons.get(kind, 0) + 1
    stats.chunks += 1
    stats.store_seconds += time.perf_counter() - started


class ChunkWriter:
    """Writes chunks in order on one thread, so validating chunk N+1 overlaps PostgreSQL storing chunk N."""

    def __init__(self, conn: psycopg.Connection, group: str, topic: str, stats: BatchStats, progress) -> None:
        self._queue: queue.Queue[Chunk | None] = queue.Queue(maxsize=1)
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
                write_chunk(*self._args, chunk, self._stats)
                if self._progress:
                    self._progress(self._stats)
            except BaseException as error:  # surfaced to the consumer thread by put()/close()
                self._error = error

    def put(self, chunk: Chunk) -> None:
        if self._error is not None:
            raise self._error
        started = time.perf_counter()
        self._queue.put(chunk)
        self._stats.wait_seconds += time.perf_counter() - started

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
