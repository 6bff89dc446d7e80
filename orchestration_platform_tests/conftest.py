"""The test session starts real services once: PostgreSQL (Debian's server, TCP + password),
the tansu Kafka-protocol broker and the demo sources server, each on a free port.

Every test runs with `DAGSTER_DEPLOYMENT=test` and the environment pointing at them, and with
`PLATFORM_DATA_DIR` in a fresh temporary directory.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from orchestration_platform.devstack.services import (
    free_port,
    start_kafka_broker,
    start_server_postgres,
    start_sources_server,
)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real PostgreSQL server (scram password login over TCP) for the whole session."""
    base = Path("/tmp") / f"op-test-pg-{uuid.uuid4().hex[:8]}"  # outside /root: the postgres user must reach it
    service = start_server_postgres(base, free_port())
    yield service.url
    service.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """bootstrap.servers of a real Kafka-protocol broker (tansu, memory storage)."""
    service = start_kafka_broker(free_port(), log_file=tmp_path_factory.mktemp("kafka") / "kafka.log")
    yield service.url
    service.stop()


@pytest.fixture(scope="session")
def sources_url() -> Iterator[str]:
    """Base URL of the demo sources server (messy CSVs, JSON APIs, fault injection on)."""
    service = start_sources_server(free_port(), faults_enabled=True)
    yield service.url
    service.stop()


@pytest.fixture(scope="session", autouse=True)
def platform_environment(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: str, kafka_bootstrap: str, sources_url: str
) -> Iterator[dict[str, str]]:
    """Point the platform at the session's services, as `make dev` points it at the local stack."""
    data_dir = tmp_path_factory.mktemp("platform-data")
    env = {
        "DAGSTER_DEPLOYMENT": "test",
        "PLATFORM_DATA_DIR": str(data_dir),
        "POSTGRES_URL": postgres_server,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DEMO_SOURCES_URL": sources_url,
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def fresh_database(postgres_server: str) -> Iterator[str]:
    """URL of a new, empty database on the session's server; dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = postgres_server.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def use_fresh_database(fresh_database: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Like `fresh_database`, and POSTGRES_URL points at it for this test."""
    monkeypatch.setenv("POSTGRES_URL", fresh_database)
    return fresh_database
