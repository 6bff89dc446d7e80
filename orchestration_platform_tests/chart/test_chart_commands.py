"""The chart's container commands and probes, run for real on this machine: the code server
(`dagster api grpc` + its `grpc-health-check` readiness probe), the webserver (`/server_info`) and
the daemon (`dagster-daemon liveness-check`) with the rendered instance dagster.yaml on a real
PostgreSQL (dagster-postgres over psycopg2) and the rendered workspace.yaml. Only the addresses
differ: Services become 127.0.0.1 ports, the in-cluster API config a never-contacted kubeconfig."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml

from orchestration_platform.devstack.services import free_port
from orchestration_platform_tests.chart.conftest import VALUE_SETS, Helm, find, instance_yaml
from orchestration_platform_tests.chart.kubeconfig import write_kubeconfig

VENV_BIN = Path(sys.executable).parent  # dagster, dagster-webserver of this venv


@pytest.fixture
def chart(helm: Helm) -> list[dict[str, Any]]:
    return helm.template(*VALUE_SETS["prod"])


def _container(chart: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    return find(chart, "Deployment", suffix)["spec"]["template"]["spec"]["containers"][0]


def _replace_port(args: list[str], old: int | str, new: int) -> list[str]:
    return [str(new) if arg == str(old) else arg for arg in args]


def _wait(check, what: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}")
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not ready after {timeout} s")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    """Processes started by a test; stopped by PID (their own process group) afterwards."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def _start(
    cmd: list[str], env: dict[str, str], log: Path, processes: list[subprocess.Popen]
) -> subprocess.Popen:
    executable = str(VENV_BIN / cmd[0]) if (VENV_BIN / cmd[0]).exists() else cmd[0]
    proc = subprocess.Popen(
        [executable, *cmd[1:]],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    processes.append(proc)
    return proc


def _container_env(container: dict[str, Any], secrets: dict[tuple[str, str], str]) -> dict[str, str]:
    """The container's `env`, with secretKeyRef values taken from `secrets` as the kubelet would."""
    env = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[(ref["name"], ref["key"])]
    return env


def _probe_ok(command: list[str], env: dict[str, str]) -> bool:
    executable = str(VENV_BIN / command[0])
    return (
        subprocess.run([executable, *command[1:]], env=env, capture_output=True, timeout=30).returncode == 0
    )


def test_code_server_webserver_and_daemon_start_with_the_rendered_config(
    chart: list[dict[str, Any]], fresh_database: str, tmp_path: Path, processes: list[subprocess.Popen]
) -> None:
    db = urlsplit(fresh_database)
    base_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "KUBERNETES_"))},
        **find(chart, "ConfigMap", "-platform-env")["data"],
        "POSTGRES_URL": fresh_database,
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "INGESTION_WAREHOUSE_URL": fresh_database,
        "PLATFORM_DATA_DIR": str(tmp_path / "data"),
        "INGESTION_LANDING_ZONE": str(tmp_path / "data" / "landing"),
    }

    # The existing Secret the chart reads the instance password from.
    secrets = {("dagster-postgresql", "postgresql-password"): db.password or ""}

    # The code server: the Deployment's command and args, its readiness probe as the kubelet runs it.
    code = _container(chart, "-orchestration-platform")
    grpc_port = free_port()
    code_env = {
        **base_env,
        **_container_env(code, secrets),
        "DAGSTER_HOME": str(tmp_path / "code-home"),
    }
    Path(code_env["DAGSTER_HOME"]).mkdir()
    code_proc = _start(
        _replace_port(code["command"] + code["args"], 3030, grpc_port),
        code_env,
        tmp_path / "code-server.log",
        processes,
    )
    probe = _replace_port(code["readinessProbe"]["exec"]["command"], 3030, grpc_port)
    _wait(
        lambda: _probe_ok(probe, code_env),
        f"code server readiness ({tmp_path / 'code-server.log'})",
        code_proc,
    )

    # The webserver: rendered dagster.yaml (PostgreSQL host and port of the test server) and workspace.
    home = tmp_path / "dagster_home"
    home.mkdir()
    instance = instance_yaml(chart)
    for storage in ("run_storage", "event_log_storage", "schedule_storage"):
        instance[storage]["config"]["postgres_db"].update(
            hostname=db.hostname,
            port=db.port,
            db_name=db.path.lstrip("/"),
            username=db.username,
            params={"sslmode": "disable"},
        )
    # The instance builds its K8sRunLauncher at start (run monitoring asks it about resumes), which
    # loads the in-cluster config: outside a cluster it reads a kubeconfig for a never-contacted API.
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig")
    assert instance["run_launcher"]["config"]["load_incluster_config"] is True
    instance["run_launcher"]["config"].update(load_incluster_config=False, kubeconfig_file=str(kubeconfig))
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance))
    workspace = yaml.safe_load(find(chart, "ConfigMap", "-workspace-yaml")["data"]["workspace.yaml"])
    workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=grpc_port)
    (tmp_path / "workspace.yaml").write_text(yaml.safe_dump(workspace))

    web = _container(chart, "-webserver")
    web_port = free_port()
    command = _replace_port(web["command"], web["ports"][0]["containerPort"], web_port)
    command = [
        str(tmp_path / "workspace.yaml") if a == "/dagster-workspace/workspace.yaml" else a for a in command
    ]
    command[command.index("0.0.0.0")] = "127.0.0.1"
    web_env = {**base_env, **_container_env(web, secrets), "DAGSTER_HOME": str(home)}
    web_proc = _start(command, web_env, tmp_path / "webserver.log", processes)
    probe_path = web["readinessProbe"]["httpGet"]["path"]

    def server_info_ok() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{web_port}{probe_path}", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    _wait(server_info_ok, f"webserver {probe_path} ({tmp_path / 'webserver.log'})", web_proc)

    query = "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename } } } } }"
    request = urllib.request.Request(
        f"http://127.0.0.1:{web_port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        entries = json.load(response)["data"]["workspaceOrError"]["locationEntries"]
    assert [(e["name"], e["locationOrLoadError"]["__typename"]) for e in entries] == [
        ("orchestration-platform", "RepositoryLocation")
    ], entries
    # The daemon: its rendered command on the same instance, and its liveness probe passes once
    # every daemon (queue, schedules, sensors, monitoring, retries) has sent a heartbeat.
    daemon = _container(chart, "-daemon")
    daemon_command = [
        str(tmp_path / "workspace.yaml") if a == "/dagster-workspace/workspace.yaml" else a
        for a in daemon["command"]
    ]
    daemon_env = {**base_env, **_container_env(daemon, secrets), "DAGSTER_HOME": str(home)}
    daemon_proc = _start(daemon_command, daemon_env, tmp_path / "daemon.log", processes)
    liveness = daemon["livenessProbe"]["exec"]["command"]
    _wait(
        lambda: _probe_ok(liveness, daemon_env), f"daemon liveness ({tmp_path / 'daemon.log'})", daemon_proc
    )

    # Sensor ticks run in the code server on the daemon's instance: every env var it needs is there.
    for name in ("daemon", "code-server", "webserver"):
        log = (tmp_path / f"{name}.log").read_text()
        assert "attempted to fetch the environment variable" not in log, f"{name}.log: {log[-3000:]}"

    # The instance tables were created in PostgreSQL by dagster-postgres (psycopg2 scheme).
    with psycopg.connect(fresh_database) as conn:
        tables = {
            row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
    assert {"runs", "event_logs", "jobs"} <= tables
