"""The demo event producer: realistic payment transactions, and their fraud labels later, into Kafka.

`orchestration-platform produce-events` (and `make dev`) streams at a configurable rate; tests and
benchmarks call `generate_events` + `produce_events` for a fixed, reproducible set. The schema is
documented in docs/events.md and validated by `orchestration_platform.lib.ml.payment_events`.

Fraud is not random noise: fraudulent charges are larger, more often online and cross-border, in
risky categories and in bursts on one card, so a model trained on the features can learn it.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import os
import random
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from orchestration_platform.lib.ml.features import RISKY_CATEGORIES
from orchestration_platform.lib.ml.payment_events import LABEL_SCHEMA, MERCHANT_CATEGORIES, TRANSACTION_SCHEMA

log = logging.getLogger(__name__)

COUNTRIES = ("US", "GB", "DE", "FR", "NL", "ES", "IT", "PL", "SE", "BR", "IN", "JP")
CURRENCY = {"US": "USD", "GB": "GBP", "JP": "JPY", "BR": "BRL", "IN": "INR", "PL": "PLN", "SE": "SEK"}


@dataclass
class EventGenerator:
    """Reproducible payment events for a population of cards (same seed, same events)."""

    seed: int = 7
    cards: int = 2_000
    fraud_rate: float = 0.04
    _rng: random.Random = field(init=False, repr=False)
    _card_country: list[str] = field(init=False, repr=False)
    _counter: int = field(init=False, default=0, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._card_country = [self._rng.choice(COUNTRIES[:6]) for _ in range(self.cards)]
        self._prefix = uuid.UUID(int=self._rng.getrandbits(128)).hex[:8]

    def transaction(self, occurred_at: datetime) -> tuple[dict, bool]:
        """One transaction event and whether it is (secretly) fraudulent."""
        rng = self._rng
        self._counter += 1
        card = rng.randrange(self.cards)
        fraud = rng.random() < self.fraud_rate
        home = self._card_country[card]
        if fraud:
            category = rng.choice(RISKY_CATEGORIES) if rng.random() < 0.8 else rng.choice(MERCHANT_CATEGORIES)
            channel = "online" if rng.random() < 0.75 else rng.choice(("card_present", "contactless"))
            merchant_country = rng.choice(COUNTRIES) if rng.random() < 0.6 else home
            amount = math.exp(rng.gauss(5.6, 1.0))
        else:
            category = (
                rng.choice(MERCHANT_CATEGORIES[:4])
                if rng.random() < 0.85
                else rng.choice(MERCHANT_CATEGORIES)
            )
            channel = rng.choices(("card_present", "contactless", "online"), weights=(5, 4, 2))[0]
            merchant_country = home if rng.random() < 0.93 else rng.choice(COUNTRIES)
            amount = math.exp(rng.gauss(3.3, 0.9))
        amount = round(min(max(amount, 0.5), 99_999.0), 2)
        tx_id = f"tx-{self._prefix}-{self._counter}"
        event = {
            "schema": TRANSACTION_SCHEMA,
            "event_id": f"ev-{self._prefix}-{self._counter}",
            "transaction_id": tx_id,
            "occurred_at": occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "card_id": f"card-{card:05d}",
            "merchant_id": f"m-{rng.randrange(5_000):04d}",
            "merchant_category": category,
            "amount": amount,
            "currency": CURRENCY.get(merchant_country, "EUR"),
            "card_country": home,
            "merchant_country": merchant_country,
            "channel": channel,
        }
        return event, fraud

    def label(self, transaction: dict, is_fraud: bool, labeled_at: datetime) -> dict:
        """The label event for a transaction produced earlier."""
        return {
            "schema": LABEL_SCHEMA,
            "event_id": f"lb-{transaction['transaction_id']}",
            "transaction_id": transaction["transaction_id"],
            "is_fraud": is_fraud,
            "labeled_at": labeled_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }


def generate_events(
    count: int, start: datetime, end: datetime, *, seed: int = 7, with_labels: bool = True
) -> list[dict]:
    """`count` transactions spread over [start, end), each followed later in the list by its label."""
    generator = EventGenerator(seed=seed)
    span = (end - start).total_seconds()
    transactions = []
    for i in range(count):
        occurred = start + timedelta(seconds=span * i / max(count, 1))
        transactions.append(generator.transaction(occurred))
    events = [event for event, _ in transactions]
    if with_labels:
        events += [generator.label(event, fraud, end) for event, fraud in transactions]
    return events


def _producer(bootstrap_servers: str, extra: dict | None = None):
    from confluent_kafka import Producer

    return Producer(
        {
            "bootstrap.servers": bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "batch.num.messages": 10_000,
            "queue.buffering.max.messages": 500_000,
            **(extra or {}),
        }
    )


def topic_partitions_from_env() -> int:
    """ML_EVENTS_PARTITIONS: partitions of the events topic the dev stack creates (default 1)."""
    raw = os.environ.get("ML_EVENTS_PARTITIONS", "").strip() or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= 1024:
        raise ValueError(
            f"ML_EVENTS_PARTITIONS={raw!r}: use a whole number of partitions from 1 to 1024 (e.g. 4)"
        )
    return int(raw)


def ensure_topic(
    bootstrap_servers: str, topic: str, partitions: int | None = None, extra: dict | None = None
) -> None:
    """Create `topic` if it does not exist (the broker may not auto-create); partitions: ML_EVENTS_PARTITIONS."""
    from confluent_kafka.admin import AdminClient, NewTopic

    partitions = partitions or topic_partitions_from_env()

    admin = AdminClient({"bootstrap.servers": bootstrap_servers, **(extra or {})})
    if topic in admin.list_topics(timeout=10).topics:
        return
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    for future in futures.values():
        try:
            future.result(timeout=10)
        except Exception as error:  # already created by someone else is fine
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise


def produce_events(
    bootstrap_servers: str, topic: str, events: Iterable[dict | bytes], *, extra: dict | None = None
) -> int:
    """Send events (dicts as JSON, bytes as they are) keyed by card or transaction; returns how many."""
    producer = _producer(bootstrap_servers, extra)
    sent = 0
    for event in events:
        if isinstance(event, bytes):
            value, key = event, None
        else:
            value = json.dumps(event, separators=(",", ":")).encode()
            key = (event.get("card_id") or event.get("transaction_id") or "").encode() or None
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:  # local queue full: let the broker catch up
                producer.poll(0.05)
        sent += 1
        if sent % 10_000 == 0:
            producer.poll(0)
    remaining = producer.flush(60)
    if remaining:
        raise RuntimeError(
            f"producer: {remaining} events to topic {topic!r} were not acknowledged within 60s"
        )
    return sent


def stream_events(
    bootstrap_servers: str,
    topic: str,
    *,
    rate_per_s: float,
    label_delay_s: float,
    late_fraction: float = 0.02,
    seed: int | None = None,
    stop: threading.Event | None = None,
    duration_s: float | None = None,
) -> Iterator[int]:
    """Stream events at `rate_per_s` until stopped; labels follow after `label_delay_s`.

    A `late_fraction` of transactions carry an `occurred_at` 5-90 minutes in the past (terminals
    that were offline), which re-opens closed feature hours. Yields the total sent every second.
    """
    if rate_per_s <= 0:
        raise ValueError(f"rate_per_s={rate_per_s}: use a positive number of events per second")
    generator = EventGenerator(seed=seed if seed is not None else random.randrange(1 << 30))
    producer = _producer(bootstrap_servers)
    pending_labels: list[tuple[float, int, dict]] = []
    sent, started, next_report = 0, time.monotonic(), time.monotonic() + 1
    while not (stop and stop.is_set()):
        now = time.monotonic()
        if duration_s is not None and now - started >= duration_s:
            break
        due = int((now - started) * rate_per_s) - sent
        wall = datetime.now(UTC)
        for _ in range(max(due, 0)):
            late = generator._rng.random() < late_fraction
            occurred = wall - timedelta(minutes=generator._rng.uniform(5, 90)) if late else wall
            event, fraud = generator.transaction(occurred)
            producer.produce(topic, value=json.dumps(event).encode(), key=event["card_id"].encode())
            label_at = now + label_delay_s * generator._rng.uniform(0.5, 1.5)
            heapq.heappush(pending_labels, (label_at, sent, generator.label(event, fraud, wall)))
            sent += 1
        while pending_labels and pending_labels[0][0] <= now:
            label = heapq.heappop(pending_labels)[2]
            label["labeled_at"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            producer.produce(topic, value=json.dumps(label).encode(), key=label["transaction_id"].encode())
        producer.poll(0)
        if now >= next_report:
            next_report = now + 1
            yield sent
        time.sleep(min(0.05, 1 / rate_per_s))
    producer.flush(30)
    yield sent
