"""The local services the platform and its tests run on are real and reachable."""

from __future__ import annotations

import httpx
import psycopg
import pytest
from confluent_kafka import Consumer, Producer

from orchestration_platform.devstack.services import (
    ServiceError,
    ensure_port_free,
    free_port,
    start_kafka_broker,
)


def test_postgres_requires_the_password(postgres_server: str) -> None:
    with psycopg.connect(postgres_server) as conn:
        assert conn.execute("select current_user").fetchone() == ("platform",)
    wrong = postgres_server.replace(postgres_server.split(":")[2].split("@")[0], "wrong-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong)


def test_kafka_broker_round_trips_a_message(kafka_bootstrap: str) -> None:
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce("services-smoke", b"hello")
    assert producer.flush(10) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": "services-smoke",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 2000,
            "heartbeat.interval.ms": 500,
        }
    )
    consumer.subscribe(["services-smoke"])
    try:
        message = None
        for _ in range(40):
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                break
        assert message is not None and message.value() == b"hello"
    finally:
        consumer.close()


def test_sources_server_answers_and_injects_faults(sources_url: str) -> None:
    assert httpx.get(f"{sources_url}/healthz").text == "ok"
    assert httpx.get(f"{sources_url}/healthz", params={"fault": "503"}).status_code == 503
    retry = httpx.get(f"{sources_url}/healthz", params={"fault": "429", "retry_after": "7"})
    assert retry.status_code == 429 and retry.headers["Retry-After"] == "7"
    params = {"fault": "500", "fault_times": "2", "fault_key": "smoke-times"}
    codes = [httpx.get(f"{sources_url}/healthz", params=params).status_code for _ in range(3)]
    assert codes == [500, 500, 200]


def test_a_taken_port_gives_a_clear_error(kafka_bootstrap: str) -> None:
    taken = int(kafka_bootstrap.rsplit(":", 1)[1])
    with pytest.raises(ServiceError, match=rf"port {taken} .* already in use.*KAFKA_PORT=<port>"):
        start_kafka_broker(taken)
    ensure_port_free(free_port(), "anything", "ANY_PORT")
