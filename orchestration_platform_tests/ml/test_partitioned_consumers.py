"""Consumers scaled across the partitions of one topic: each owns a disjoint set, a killed one's partitions
are taken over, and a consumer added while others run changes nothing in the totals (4-partition topic,
real tansu broker, real PostgreSQL, consumer processes killed with SIGKILL)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid

import psycopg
import pytest

from orchestration_platform.devstack.events import ensure_topic, generate_events, produce_events
from orchestration_platform.lib.ml.event_store import (
    ConsumerBusy,
    consume_batch,
    consumer_config,
    owned_partitions,
)
from orchestration_platform_tests.ml.conftest import DAY

PARTITIONS = 4
FAST_GROUP = {"session.timeout.ms": 2000, "heartbeat.interval.ms": 500}


@pytest.fixture
def four_partitions(kafka_bootstrap: str, ml_env: dict) -> str:
    name = f"payments4-{uuid.uuid4().hex[:10]}"
    ensure_topic(kafka_bootstrap, name, partitions=PARTITIONS)
    return name


def _produce(bootstrap: str, topic: str, transactions: int, seed: int) -> list[dict]:
    from datetime import timedelta

    events = generate_events(transactions, DAY, DAY + timedelta(hours=2), seed=seed)
    produce_events(bootstrap, topic, events)  # keyed by card: spread over the 4 partitions
    return events


def _worker(url: str, bootstrap: str, topic: str, index: int, consumers: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "orchestration_platform_tests.ml.consumer_worker", url, bootstrap, topic,
               str(index), str(consumers), "scale-test"]  # fmt: skip
    return subprocess.Popen(command, env=os.environ, stdout=subprocess.PIPE, text=True)


def _held(worker: subprocess.Popen) -> list[dict]:
    out, _ = worker.communicate(timeout=240)
    assert worker.returncode == 0, out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _stored(url: str) -> int:
    try:
        with psycopg.connect(url) as conn:
            return conn.execute(
                "SELECT (SELECT count(*) FROM ml.transactions) + (SELECT count(*) FROM ml.labels)"
            ).fetchone()[0]
    except psycopg.errors.UndefinedTable:
        return 0


def _assert_exactly_once(url: str, events: list[dict]) -> None:
    with psycopg.connect(url) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT event_id FROM ml.transactions UNION ALL SELECT event_id FROM ml.labels"
            )
        ]
        per_partition = dict(
            conn.execute(
                "SELECT kafka_partition, next_offset FROM ml.consumer_offsets WHERE consumer_group = 'scale-test'"
            ).fetchall()
        )
        stored_per_partition = dict(
            conn.execute(
                "SELECT kafka_partition, count(*) FROM (SELECT kafka_partition FROM ml.transactions "
                "UNION ALL SELECT kafka_partition FROM ml.labels) e GROUP BY 1"
            ).fetchall()
        )
    assert len(ids) == len(events) and set(ids) == {e["event_id"] for e in events}  # none lost, none twice
    assert sorted(per_partition) == list(range(PARTITIONS))  # every partition was consumed
    # Each partition's stored position is exactly the number of its events (offsets start at 0).
    assert per_partition == stored_per_partition


def test_consumer_i_of_n_owns_every_nth_partition():
    assert [owned_partitions([3, 1, 0, 2], i, 2) for i in range(2)] == [[0, 2], [1, 3]]
    assert [owned_partitions(list(range(4)), i, 4) for i in range(4)] == [[0], [1], [2], [3]]
    assert owned_partitions(list(range(4)), 5, 8) == []  # more consumers than partitions: idle
    with pytest.raises(ValueError, match="consumer 2 of 2"):
        owned_partitions([0, 1], 2, 2)


@pytest.mark.parametrize("consumers", [1, 2, 4])
def test_n_consumers_split_the_topic_and_store_every_event_once(
    kafka_bootstrap, ml_env, four_partitions, consumers
):
    events = _produce(kafka_bootstrap, four_partitions, 4_000, seed=consumers)
    workers = [
        _worker(ml_env["postgres_url"], kafka_bootstrap, four_partitions, i, consumers)
        for i in range(consumers)
    ]
    held = [{p for line in _held(w) for p in line["partitions"]} for w in workers]
    _assert_exactly_once(ml_env["postgres_url"], events)
    # Each consumer wrote only the partitions it owns, and together they cover the topic.
    assert held == [set(owned_partitions(list(range(PARTITIONS)), i, consumers)) for i in range(consumers)]


def test_killed_consumers_leave_their_partitions_to_a_restart(kafka_bootstrap, ml_env, four_partitions):
    events = _produce(kafka_bootstrap, four_partitions, 15_000, seed=31)
    url, rng = ml_env["postgres_url"], random.Random(5)
    workers = {i: _worker(url, kafka_bootstrap, four_partitions, i, 4) for i in range(4)}
    try:
        kills_mid_stream = 0
        for _ in range(6):
            target = _stored(url) + rng.randint(200, 3_000)  # a random point of the stream
            deadline = time.monotonic() + 60
            while _stored(url) < target and any(w.poll() is None for w in workers.values()):
                assert time.monotonic() < deadline, "the consumers made no progress"
                time.sleep(rng.uniform(0.005, 0.05))
            victim = rng.choice(sorted(workers))
            stored_at_kill = _stored(url)
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait(timeout=10)
            workers[victim].stdout.close()
            kills_mid_stream += 0 < stored_at_kill < len(events)
            workers[victim] = _worker(url, kafka_bootstrap, four_partitions, victim, 4)  # the restart
        assert kills_mid_stream >= 3, "the kills should land while the topic is being consumed"
        for worker in workers.values():
            _held(worker)
    finally:
        for worker in workers.values():
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=10)
    _assert_exactly_once(url, events)


def test_a_consumer_added_while_others_run_changes_nothing_in_the_totals(
    kafka_bootstrap, ml_env, four_partitions
):
    events = _produce(kafka_bootstrap, four_partitions, 12_000, seed=41)
    url = ml_env["postgres_url"]
    first = [_worker(url, kafka_bootstrap, four_partitions, i, 2) for i in range(2)]
    deadline = time.monotonic() + 60
    while _stored(url) == 0:
        assert time.monotonic() < deadline, "the first consumers made no progress"
        time.sleep(0.05)
    # Scale out from 2 to 4 while the first two run: the newcomers own partitions 2 and 3, which the
    # first two are writing; the per-partition locks decide who writes each batch.
    added = [_worker(url, kafka_bootstrap, four_partitions, i, 4) for i in (2, 3)]
    for worker in first + added:
        _held(worker)
    _assert_exactly_once(url, events)


def test_a_partition_being_written_is_skipped_and_the_others_are_consumed(
    kafka_bootstrap, ml_env, four_partitions
):
    events = _produce(kafka_bootstrap, four_partitions, 500, seed=51)
    url = ml_env["postgres_url"]
    config = consumer_config(kafka_bootstrap, "scale-test", FAST_GROUP)
    consume_batch(url, config, four_partitions, max_messages=1)  # creates the tables
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute(
            "SELECT pg_advisory_lock(hashtextextended(%s, 0))",
            (f"ml.consumer:scale-test:{four_partitions}:2",),
        )
        stats = consume_batch(url, config, four_partitions)
        assert stats.owned == [0, 1, 2, 3] and stats.partitions == [0, 1, 3]
        with pytest.raises(ConsumerBusy, match=r"partitions \[2\]"):
            consume_batch(url, config, four_partitions, consumer_index=2, consumers=4)
    rest = consume_batch(url, config, four_partitions)  # the lock is gone with its session
    assert rest.partitions == [0, 1, 2, 3]
    assert _stored(url) == len(events)
