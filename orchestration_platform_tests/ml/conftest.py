"""Fixtures of the streaming ML tests: a unique topic per test, a fresh database, the ML resources,
a real serving app (uvicorn in a subprocess on a free port) and helpers that produce events."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import httpx
import pytest

from orchestration_platform.defs.ml.kafka import KafkaResource
from orchestration_platform.defs.ml.registry import ModelRegistryResource
from orchestration_platform.defs.ml.serving_client import ServingEndpointResource
from orchestration_platform.defs.ml.training_launcher import TrainingLauncher
from orchestration_platform.defs.shared.alerts import AlertWebhookResource
from orchestration_platform.defs.shared.postgres import PostgresResource
from orchestration_platform.devstack.events import ensure_topic, generate_events, produce_events
from orchestration_platform.devstack.services import free_port, wait_for_port
from orchestration_platform.devstack.stack import stop_process_group

# A fixed past day, so every hour used by the tests is closed and inside the hourly partitions.
DAY = datetime(2026, 3, 2, tzinfo=UTC)


def hour_key(hour: datetime) -> str:
    return f"{hour:%Y-%m-%d-%H:%M}"


@pytest.fixture
def topic(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new topic for this test; ML_EVENTS_TOPIC points at it."""
    name = f"payments-{uuid.uuid4().hex[:10]}"
    ensure_topic(kafka_bootstrap, name)
    monkeypatch.setenv("ML_EVENTS_TOPIC", name)
    return name


@pytest.fixture
def ml_env(use_fresh_database: str, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A fresh database, a fresh topic and a fresh artifact directory for one test."""
    artifacts = tmp_path / "mlflow-artifacts"
    monkeypatch.setenv("MLFLOW_ARTIFACT_ROOT", str(artifacts))
    return {"postgres_url": use_fresh_database, "topic": topic, "artifact_root": str(artifacts)}


@pytest.fixture
def ml_resources(ml_env: dict, kafka_bootstrap: str) -> dict:
    """The resources the ML definitions use, pointed at this test's database, topic and artifacts."""
    return {
        "postgres": PostgresResource(url=ml_env["postgres_url"]),
        # Group joins take session.timeout.ms / 2 on tansu: short timeouts keep tests fast (FACTS.md).
        "kafka": KafkaResource(
            bootstrap_servers=kafka_bootstrap, session_timeout_ms=2000, heartbeat_interval_ms=500
        ),
        "model_registry": ModelRegistryResource(
            postgres_url=ml_env["postgres_url"], artifact_root=ml_env["artifact_root"]
        ),
        "training_launcher": TrainingLauncher(mode="subprocess"),
        "alert_webhook": AlertWebhookResource(),
    }


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def produce_hours(
    bootstrap: str, topic: str, *, hours: int, per_hour: int, seed: int = 7, start: datetime = DAY
) -> list[dict]:
    """Produce `per_hour` transactions in each of `hours` hours from `start`, then all their labels."""
    events = generate_events(hours * per_hour, start, start + timedelta(hours=hours), seed=seed)
    produce_events(bootstrap, topic, events)
    return events


class ServingProcess:
    """`orchestration-platform serve` in a subprocess on a free port (stopped by PID)."""

    def __init__(self, postgres_url: str, artifact_root: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "POSTGRES_URL": postgres_url,
            "MLFLOW_ARTIFACT_ROOT": artifact_root,
            "SERVING_REFRESH_S": "0",
            "SERVING_MAX_BODY_BYTES": "20000",
        }
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "orchestration-platform"), "serve", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            wait_for_port(self.port, "serving app", timeout=60, proc=self.proc)
        except Exception:
            self.stop()
            raise

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return httpx.post(self.url + path, timeout=30, **kwargs)

    def stop(self) -> None:
        stop_process_group(self.proc, timeout=15, sig=signal.SIGTERM)


@pytest.fixture
def serving(ml_env: dict) -> Iterator[ServingProcess]:
    process = ServingProcess(ml_env["postgres_url"], ml_env["artifact_root"])
    yield process
    process.stop()


@pytest.fixture
def serving_resource(serving: ServingProcess) -> ServingEndpointResource:
    return ServingEndpointResource(url=serving.url, verify_timeout_s=30)


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
