"""`orchestration-platform dev up` starts the local stack and Ctrl-C stops all of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from orchestration_platform.devstack.processes import is_running
from orchestration_platform.devstack.services import free_port
from orchestration_platform_tests.devstack import stack_harness as harness

CLI = [sys.executable, "-m", "orchestration_platform.cli"]


def _stack_env(state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_URL", "KAFKA_BOOTSTRAP_SERVERS")}
    env.update(
        PLATFORM_STATE_DIR=str(state_dir),
        DAGSTER_PORT=str(free_port()),
        SOURCES_PORT=str(free_port()),
        KAFKA_PORT=str(free_port()),
        SERVING_PORT=str(free_port()),
    )
    return env


def test_dev_up_serves_every_service_and_sigint_stops_them_all(tmp_path: Path) -> None:
    env = harness.stack_env(tmp_path.name)
    proc = harness.start(env, with_dagster=False)
    try:
        records = harness.wait_until_up(env, proc, with_dagster=False)
        by_name = {r.name: r for r in records}
        assert {"postgres", "kafka", "stack", "events", "serving", "watchdog"} <= set(by_name)
        with psycopg.connect(by_name["postgres"].url) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        assert httpx.get(f"http://127.0.0.1:{env['SOURCES_PORT']}/healthz").text == "ok"
        assert httpx.get(f"http://127.0.0.1:{env['SERVING_PORT']}/healthz").status_code in (200, 503)
        status = subprocess.run([*CLI, "dev", "status"], env=env, capture_output=True, text=True, check=True)
        assert "postgres" in status.stdout and "running" in status.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    assert proc.returncode == 0, harness.output(env)
    assert "local stack stopped" in harness.output(env)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(is_running(r) for r in records):
        time.sleep(0.2)
    assert [r.name for r in records if is_running(r)] == []
    assert not (harness.state_dir(env) / "stack.json").exists()


def test_dev_up_names_the_port_that_is_taken(tmp_path: Path, sources_url: str, postgres_server: str) -> None:
    env = _stack_env(Path("/tmp") / f"op-stack-{tmp_path.name}")
    env["SOURCES_PORT"] = sources_url.rsplit(":", 1)[1]
    env["POSTGRES_URL"] = postgres_server  # skip the embedded server: only the port check matters
    result = subprocess.run([*CLI, "dev", "up", "--no-dagster"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"port {env['SOURCES_PORT']}" in result.stderr and "SOURCES_PORT=<port>" in result.stderr


@pytest.mark.parametrize("value", ["http", "70000", "-1"])
def test_a_port_setting_that_is_not_a_port_is_refused(tmp_path: Path, value: str) -> None:
    env = _stack_env(tmp_path)
    env["KAFKA_PORT"] = value
    result = subprocess.run([*CLI, "dev", "up"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and f"KAFKA_PORT={value!r} is not a TCP port" in result.stderr
