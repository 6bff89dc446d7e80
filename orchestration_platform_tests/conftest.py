"""Real services for the tests that ask for them: PostgreSQL (Debian's server, TCP + password), the
tansu Kafka-protocol broker and the demo sources server, each on a free port.

Each service starts the first time a test requests its fixture (`postgres_server`, `kafka_bootstrap`,
`sources_url`, or one built on them such as `use_fresh_database`), once for the session, and from then
on its environment variable (POSTGRES_URL, KAFKA_BOOTSTRAP_SERVERS, DEMO_SOURCES_URL) points at it, as
`make dev` points the platform at the local stack. A test that needs none starts none. Every test runs
with `DAGSTER_DEPLOYMENT=test` and `PLATFORM_DATA_DIR` in a fresh temporary directory; a test that
needs every service at once (the browser test) requests `platform_environment`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def environment(**env: str) -> Iterator[dict[str, str]]:
    """Set `env` in os.environ until the end of the block, then restore what was there."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session", autouse=True)
def platform_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Every test: the test deployment and a data directory of the session's own (no service started)."""
    with environment(DAGSTER_DEPLOYMENT="test", PLATFORM_DATA_DIR=str(tmp_path_factory.mktemp("platform-data"))) as env:
        yield env


@pytest.fixture(scope="session")
def postgres_server(platform_settings: dict[str, str]) -> Iterator[str]:
    """URL of a real PostgreSQL server (scram password login over TCP), started on first use; POSTGRES_URL."""
    base = Path("/tmp") / f"op-test-pg-{uuid.uuid4().hex[:8]}"  # outside /root: the postgres user must reach it
    service = start_server_postgres(base, free_port())
    with environment(POSTGRES_URL=service.url):
        yield service.url
    service.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(platform_settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """bootstrap.servers of a real Kafka-protocol broker (tansu, memory storage); KAFKA_BOOTSTRAP_SERVERS."""
    service = start_kafka_broker(free_port(), log_file=tmp_path_factory.mktemp("kafka") / "kafka.log")
    with environment(KAFKA_BOOTSTRAP_SERVERS=service.url):
        yield service.url
    service.stop()


@pytest.fixture(scope="session")
def sources_url(platform_settings: dict[str, str]) -> Iterator[str]:
    """Base URL of the demo sources server (messy CSVs, JSON APIs, fault injection on); DEMO_SOURCES_URL."""
    service = start_sources_server(free_port(), faults_enabled=True)
    with environment(DEMO_SOURCES_URL=service.url):
        yield service.url
    service.stop()


@pytest.fixture(scope="session")
def platform_environment(
    platform_settings: dict[str, str], postgres_server: str, kafka_bootstrap: str, sources_url: str
) -> dict[str, str]:
    """Every service at once, as `make dev` runs them: the environment that points the platform at them."""
    return {**platform_settings, "POSTGRES_URL": postgres_server, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "DEMO_SOURCES_URL": sources_url}


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
