"""Events into PostgreSQL: exactly once when the consumer is killed at random points, dead letters
for poison messages, and one writer per consumer group."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta

import psycopg
import pytest
from confluent_kafka import Producer, TopicPartition

from orchestration_platform.devstack.events import generate_events, produce_events
from orchestration_platform.lib.ml.event_store import ConsumerBusy, consume_batch, consumer_config
from orchestration_platform_tests.ml.conftest import DAY, produce_hours

FAST_GROUP = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 500}


def _stored(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url) as conn:
        total = conn.execute(
            "SELECT (SELECT count(*) FROM ml.transactions) + (SELECT count(*) FROM ml.labels)"
        ).fetchone()[0]
        distinct = conn.execute(
            "SELECT count(*) FROM (SELECT event_id FROM ml.transactions UNION SELECT event_id FROM ml.labels) e"
        ).fetchone()[0]
        offset = conn.execute("SELECT coalesce(sum(next_offset), 0) FROM ml.consumer_offsets").fetchone()[0]
    return total, distinct, offset


def _stored_or_zero(url: str) -> int:
    try:
        return _stored(url)[0]
    except psycopg.errors.UndefinedTable:
        return 0


def test_every_event_is_stored_exactly_once_when_the_consumer_is_killed(kafka_bootstrap, ml_env):
    events = produce_hours(kafka_bootstrap, ml_env["topic"], hours=2, per_hour=6_000, seed=3)
    rng = random.Random(11)
    command = [sys.executable, "-m", "orchestration_platform_tests.ml.consumer_worker", ml_env["postgres_url"],
               kafka_bootstrap, ml_env["topic"]]  # fmt: skip
    kills_mid_stream = 0
    for _ in range(5):
        before = _stored_or_zero(ml_env["postgres_url"])
        target = before + rng.randint(300, 3_000)  # a random point of the stream, mostly inside a chunk
        worker = subprocess.Popen(command, env=os.environ)
        deadline = time.monotonic() + 60
        while _stored_or_zero(ml_env["postgres_url"]) < target and worker.poll() is None:
            assert time.monotonic() < deadline, "the consumer made no progress"
            time.sleep(rng.uniform(0.005, 0.05))
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        after = _stored_or_zero(ml_env["postgres_url"])
        kills_mid_stream += before < after < len(events)
    assert kills_mid_stream >= 2, "the kills should land while the topic is being consumed"
    finisher = subprocess.run(command, env=os.environ, timeout=180)
    assert finisher.returncode == 0
    total, distinct, next_offset = _stored(ml_env["postgres_url"])
    assert total == len(events) and distinct == len(events)
    assert next_offset == len(events)  # the stored position is exactly the end of the topic
    with psycopg.connect(ml_env["postgres_url"]) as conn:
        ids = {
            r[0]
            for r in conn.execute(
                "SELECT event_id FROM ml.transactions UNION ALL SELECT event_id FROM ml.labels"
            )
        }
    assert ids == {e["event_id"] for e in events}


def test_poison_messages_go_to_dead_letters_and_the_stream_continues(kafka_bootstrap, ml_env):
    good = produce_hours(kafka_bootstrap, ml_env["topic"], hours=1, per_hour=50, seed=5)
    valid = dict(good[0], event_id="ev-late-valid", transaction_id="tx-late-valid")
    poison = [
        b"{not json",
        json.dumps({**good[1], "amount": -10}).encode(),
        json.dumps({k: v for k, v in good[2].items() if k != "card_id"}).encode(),
        json.dumps({**good[3], "occurred_at": "2026-03-02T01:00:00"}).encode(),
        json.dumps({**good[4], "card_id": "x\u0000"}).encode(),
    ]
    produce_events(kafka_bootstrap, ml_env["topic"], [*poison, valid])
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(ml_env["topic"], value=None, key=b"tombstone")
    producer.flush(10)
    config = consumer_config(kafka_bootstrap, "dead-letter-test", FAST_GROUP)
    stats = consume_batch(ml_env["postgres_url"], config, ml_env["topic"])
    assert stats.dead_letters == 6 and stats.transactions == 51 and stats.labels == 50 and stats.lag == 0
    with psycopg.connect(ml_env["postgres_url"]) as conn:
        reasons = [r[0] for r in conn.execute("SELECT reason FROM ml.dead_letters ORDER BY kafka_offset")]
        stored_payload = conn.execute(
            "SELECT payload FROM ml.dead_letters ORDER BY kafka_offset LIMIT 1"
        ).fetchone()[0]
        assert conn.execute("SELECT 1 FROM ml.transactions WHERE event_id = 'ev-late-valid'").fetchone()
    assert bytes(stored_payload) == b"{not json"  # kept as received, for replay after a fix
    assert reasons[0].startswith("not JSON") and "`$.amount`" in reasons[1] and "card_id" in reasons[2]
    assert "timezone" in reasons[3] and "NUL" in reasons[4] and "tombstone" in reasons[5]

    # The stream goes on after the poison: the next batch starts after it.
    more = produce_hours(kafka_bootstrap, ml_env["topic"], hours=1, per_hour=10, seed=6)
    again = consume_batch(ml_env["postgres_url"], config, ml_env["topic"])
    assert again.consumed == len(more) and again.dead_letters == 0


def test_a_second_consumer_of_the_same_group_is_refused(kafka_bootstrap, ml_env):
    produce_hours(kafka_bootstrap, ml_env["topic"], hours=1, per_hour=10)
    config = consumer_config(kafka_bootstrap, "busy-test", FAST_GROUP)
    consume_batch(ml_env["postgres_url"], config, ml_env["topic"])  # creates the tables
    with psycopg.connect(ml_env["postgres_url"], autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"ml.consumer:busy-test:{ml_env['topic']}",))
        with pytest.raises(ConsumerBusy, match="busy-test"):
            consume_batch(ml_env["postgres_url"], config, ml_env["topic"])


def test_a_missing_topic_fails_with_its_name(kafka_bootstrap, ml_env):
    config = consumer_config(kafka_bootstrap, "missing-test", FAST_GROUP)
    with pytest.raises(RuntimeError, match="no-such-topic-"):
        consume_batch(ml_env["postgres_url"], config, f"no-such-topic-{os.getpid()}")


def test_lag_counts_what_the_store_has_not_consumed(kafka_bootstrap, ml_env):
    from confluent_kafka import Consumer

    from orchestration_platform.lib.ml.event_store import topic_lag

    # One record per request: tansu's high watermark counts a whole record batch as one offset.
    events = generate_events(100, DAY, DAY + timedelta(hours=1))
    produce_events(kafka_bootstrap, ml_env["topic"], events, extra={"linger.ms": 0, "batch.num.messages": 1})
    config = consumer_config(kafka_bootstrap, "lag-test", FAST_GROUP)
    consume_batch(ml_env["postgres_url"], config, ml_env["topic"], max_messages=150, chunk_size=50)
    probe = Consumer(config)
    try:
        with psycopg.connect(ml_env["postgres_url"], autocommit=True) as conn:
            assert topic_lag(probe, conn, "lag-test", ml_env["topic"]) == {0: 50}
        assert probe.get_watermark_offsets(TopicPartition(ml_env["topic"], 0), timeout=5)[1] == 200
    finally:
        probe.close()


def test_a_batch_ends_under_a_live_stream_and_the_next_one_continues(kafka_bootstrap, ml_env):
    """A live producer never lets the topic go idle: the batch stops after max_seconds, losing nothing."""
    import threading

    from orchestration_platform.devstack.events import stream_events

    stop = threading.Event()
    stream = threading.Thread(
        target=lambda: [None for _ in stream_events(
            kafka_bootstrap, ml_env["topic"], rate_per_s=200, label_delay_s=0, late_fraction=0, seed=9, stop=stop
        )],
        daemon=True,
    )  # fmt: skip
    stream.start()
    config = consumer_config(kafka_bootstrap, "live-stream-test", FAST_GROUP)
    try:
        time.sleep(1)
        first = consume_batch(ml_env["postgres_url"], config, ml_env["topic"], max_seconds=2)
        assert first.consumed > 0  # it returned although events kept arriving
    finally:
        stop.set()
        stream.join(timeout=30)
    rest = consume_batch(ml_env["postgres_url"], config, ml_env["topic"])
    total, distinct, _ = _stored(ml_env["postgres_url"])
    assert rest.consumed > 0 and rest.dead_letters == 0
    assert first.consumed + rest.consumed == total == distinct  # every event stored once, none lost


def test_stored_rows_are_exactly_the_events_sent_whatever_their_characters(kafka_bootstrap, ml_env):
    """The COPY rows are written from one JSON encode when no value needs escaping, by the csv module
    otherwise: both give back exactly the values sent (quotes, commas, `],[`, backslashes, newlines,
    non-ASCII, offsets that are not whole hours)."""
    from datetime import datetime

    plain = generate_events(50, DAY, DAY + timedelta(hours=1), seed=12)
    tricky_ids = ['card "quoted"', "a,b", "tx],[y", "back\\slash", "two\nlines", "ünïcödé €", "x" * 64]
    tricky = [
        dict(
            plain[i],
            event_id=f"ev-tricky-{i}",
            transaction_id=f"tx-tricky-{i}",
            card_id=value,
            merchant_id=value,
        )
        for i, value in enumerate(tricky_ids)
    ]
    offset = dict(plain[10], event_id="ev-offset", transaction_id="tx-offset",
                  occurred_at="2026-03-02T05:45:30.123456+05:30", amount=0.01)  # fmt: skip
    config = consumer_config(kafka_bootstrap, "characters-test", FAST_GROUP)
    produce_events(kafka_bootstrap, ml_env["topic"], plain)  # a chunk on the fast path
    consume_batch(ml_env["postgres_url"], config, ml_env["topic"])
    produce_events(kafka_bootstrap, ml_env["topic"], [*tricky, offset])  # a chunk on the fallback path
    stats = consume_batch(ml_env["postgres_url"], config, ml_env["topic"])
    assert stats.dead_letters == 0 and stats.transactions == len(tricky) + 1
    with psycopg.connect(ml_env["postgres_url"]) as conn:
        stored = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT event_id, transaction_id, occurred_at, card_id, merchant_id, merchant_category, amount, "
                "currency, card_country, merchant_country, channel FROM ml.transactions"
            )
        }
        labels = {
            row[0]: row[1:]
            for row in conn.execute("SELECT event_id, transaction_id, is_fraud FROM ml.labels")
        }
    for event in [*plain, *tricky, offset]:
        if event["schema"] != "payments.transaction/v1":
            assert labels[event["event_id"]] == (event["transaction_id"], event["is_fraud"])
            continue
        row = stored[event["event_id"]]
        sent = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
        assert row[1] == sent  # the same instant
        assert (row[0], *row[2:]) == (
            event["transaction_id"], event["card_id"], event["merchant_id"], event["merchant_category"],
            event["amount"], event["currency"], event["card_country"], event["merchant_country"], event["channel"],
        )  # fmt: skip


def test_a_chunk_of_many_slices_keeps_poison_offsets_and_utc_hours(kafka_bootstrap, ml_env):
    """A chunk is validated in slices of SLICE messages: poison in any slice goes to dead letters with its own
    offset, the good events around it are stored once, and an event with a non-UTC offset marks its UTC hour."""
    from datetime import UTC, datetime

    from orchestration_platform.lib.ml.event_chunks import SLICE

    events = generate_events(3 * SLICE, DAY, DAY + timedelta(hours=2), seed=21)
    transactions = [e for e in events if e["schema"] == "payments.transaction/v1"]
    shifted = dict(transactions[0], event_id="ev-shifted", transaction_id="tx-shifted",
                   occurred_at="2026-03-02T09:45:00+05:30")  # 04:15 UTC  # fmt: skip
    payloads = [json.dumps(e).encode() for e in events]
    poison_at = [10, SLICE + 7, 2 * SLICE + 3]  # one in each slice of the first chunk
    for at in reversed(poison_at):
        payloads.insert(at, b"{not json")
    payloads.insert(2 * SLICE + 100, json.dumps(shifted).encode())
    produce_events(kafka_bootstrap, ml_env["topic"], payloads)
    config = consumer_config(kafka_bootstrap, "slices-test", FAST_GROUP)
    stats = consume_batch(ml_env["postgres_url"], config, ml_env["topic"], chunk_size=len(payloads))
    assert stats.dead_letters == len(poison_at) and stats.lag == 0
    assert stats.transactions + stats.labels == len(events) + 1
    total, distinct, next_offsets = _stored(ml_env["postgres_url"])
    assert total == distinct == len(events) + 1 and next_offsets == len(payloads)
    with psycopg.connect(ml_env["postgres_url"]) as conn:
        dead = [bytes(r[0]) for r in conn.execute("SELECT payload FROM ml.dead_letters")]
        stored_at = conn.execute("SELECT occurred_at FROM ml.transactions WHERE event_id = 'ev-shifted'").fetchone()[0]
        hours = {r[0] for r in conn.execute("SELECT hour FROM ml.feature_hours")}
    assert dead == [b"{not json"] * len(poison_at)
    assert stored_at == datetime(2026, 3, 2, 4, 15, tzinfo=UTC)
    assert datetime(2026, 3, 2, 4, 0, tzinfo=UTC) in hours  # its UTC hour, not 09:00
    assert datetime(2026, 3, 2, 9, 0, tzinfo=UTC) not in hours
