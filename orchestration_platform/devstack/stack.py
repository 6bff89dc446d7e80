"""The local stack behind `make dev`: embedded services, then `dagster dev` on top of them.

Started services are recorded in `<state dir>/stack.json` so that `dev status` and `dev down`
can find them (by PID) from another shell.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from orchestration_platform.devstack.services import (
    RunningService,
    ServiceError,
    ensure_port_free,
    start_embedded_postgres,
    start_kafka_broker,
    start_sources_server,
)
from orchestration_platform.settings import REPO_ROOT, get_settings

log = logging.getLogger("orchestration_platform.devstack")


@dataclass(frozen=True)
class StackPorts:
    """Ports of the local stack; each one is moved by the environment variable in its name."""

    dagster: int = 3000
    sources: int = 8765
    kafka: int = 19092
    serving: int = 8780

    @classmethod
    def from_env(cls) -> StackPorts:
        def port(name: str, default: int) -> int:
            raw = os.environ.get(name, "").strip() or str(default)
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise ServiceError(f"{name}={raw!r} is not a TCP port: use a number from 1 to 65535")
            return int(raw)

        return cls(
            dagster=port("DAGSTER_PORT", cls.dagster),
            sources=port("SOURCES_PORT", cls.sources),
            kafka=port("KAFKA_PORT", cls.kafka),
            serving=port("SERVING_PORT", cls.serving),
        )


def state_dir() -> Path:
    return Path(os.environ.get("PLATFORM_STATE_DIR", str(REPO_ROOT / ".local"))).resolve()


def stack_file() -> Path:
    return state_dir() / "stack.json"


def start_local_services(ports: StackPorts) -> tuple[list[RunningService], dict[str, str]]:
    """Start every local service; returns them and the environment that points the platform at them."""
    root = state_dir()
    (root / "logs").mkdir(parents=True, exist_ok=True)
    services: list[RunningService] = []
    env: dict[str, str] = {"DAGSTER_DEPLOYMENT": "local"}
    try:
        if os.environ.get("POSTGRES_URL"):
            log.info("PostgreSQL: using POSTGRES_URL from the environment")
        else:
            postgres = start_embedded_postgres(root / "postgres")
            services.append(postgres)
            env["POSTGRES_URL"] = postgres.url
            log.info("PostgreSQL: embedded server in %s (pid %s)", root / "postgres", postgres.pid)
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            log.info("Kafka: using KAFKA_BOOTSTRAP_SERVERS from the environment")
        else:
            kafka = start_kafka_broker(ports.kafka, log_file=root / "logs" / "kafka.log")
            services.append(kafka)
            env["KAFKA_BOOTSTRAP_SERVERS"] = kafka.url
            log.info("Kafka: tansu broker on %s (pid %s)", kafka.url, kafka.pid)
            if not os.environ.get("ML_EVENTS_TOPIC"):
                # The local broker keeps topics in memory, PostgreSQL keeps the consumed offsets: a new
                # topic name per start keeps a fresh topic's offsets from clashing with an old one's.
                env["ML_EVENTS_TOPIC"] = f"payments-{time.strftime('%Y%m%d-%H%M%S')}"
                log.info("Kafka: demo events go to topic %s", env["ML_EVENTS_TOPIC"])
        sources = start_sources_server(ports.sources)
        services.append(sources)
        env["DEMO_SOURCES_URL"] = sources.url
        env.setdefault("DEMO_API_TOKEN", os.environ.get("DEMO_API_TOKEN", "demo-token"))
        log.info("Demo sources: %s", sources.url)
    except BaseException:
        stop_services(services)
        raise
    return services, env


def stop_services(services: list[RunningService]) -> None:
    for service in reversed(services):
        service.stop()


def write_stack_file(records: list[dict]) -> None:
    path = stack_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"started_at": time.time(), "processes": records}, indent=2))


def read_stack_file() -> list[dict]:
    path = stack_file()
    if not path.exists():
        return []
    return json.loads(path.read_text()).get("processes", [])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reset_signals() -> None:
    # A shell that started us in the background ignores SIGINT; `dagster dev` would inherit that.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_dev(ports: StackPorts, *, with_dagster: bool = True) -> int:
    """Start the stack and `dagster dev`; Ctrl-C (or SIGTERM) stops everything that was started."""
    ensure_port_free(ports.dagster, "Dagster webserver", "DAGSTER_PORT")
    dagster_home = state_dir() / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())

    services, env = start_local_services(ports)
    child_env = {**os.environ, **env, "DAGSTER_HOME": str(dagster_home)}
    os.environ.update(env)
    landing_zone = get_settings().landing_zone
    landing_zone.mkdir(parents=True, exist_ok=True)  # so a first file can be dropped right away
    log.info("Landing zone: drop daily CSV files (daily_cases_YYYY-MM-DD.csv) into %s", landing_zone)
    extra = start_dev_processes(ports, child_env)
    children: list[subprocess.Popen] = list(extra)
    try:
        if with_dagster:
            dagster = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "dagster"),
                    "dev",
                    "-w",
                    str(REPO_ROOT / "workspace.yaml"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(ports.dagster),
                ],
                env=child_env,
                cwd=dagster_home,  # not the repo: dagster warns about the repo's dagster.yaml there
                preexec_fn=_reset_signals,
                start_new_session=True,
            )
            children.append(dagster)
        write_stack_file(
            [{"name": s.name, "pid": s.pid, "url": s.url} for s in services if s.pid != os.getpid()]
            + [{"name": "stack", "pid": os.getpid(), "url": f"http://127.0.0.1:{ports.dagster}"}]
            + [{"name": " ".join(map(str, c.args[:2])), "pid": c.pid, "url": ""} for c in children]
        )
        log.info("Dagster UI: http://127.0.0.1:%s  (Ctrl-C stops the whole stack)", ports.dagster)
        stop = {"requested": False}

        def request_stop(signum, frame):
            stop["requested"] = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        while not stop["requested"]:
            if with_dagster and children[-1].poll() is not None:
                log.error("dagster dev exited with code %s", children[-1].returncode)
                return children[-1].returncode or 1
            time.sleep(0.5)
        return 0
    finally:
        for child in reversed(children):
            stop_process_group(child)
        stop_services(services)
        with contextlib.suppress(FileNotFoundError):
            stack_file().unlink()
        log.info("local stack stopped")


def stop_process_group(child: subprocess.Popen, timeout: float = 20) -> None:
    """SIGINT to the child's process group (its own session), SIGKILL if it has not exited in time."""
    if child.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGINT)
    try:
        child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)


def start_dev_processes(ports: StackPorts, env: dict[str, str]) -> list[subprocess.Popen]:
    """Extra long-running processes of the dev stack: the payment event producer and model serving.

    Both are `orchestration-platform` subcommands in their own session (stopped by PID with the stack);
    their output goes to `<state dir>/logs/`. `env` gains MODEL_SERVING_URL for `dagster dev`.
    """
    ensure_port_free(ports.serving, "model serving", "SERVING_PORT")
    env["MODEL_SERVING_URL"] = f"http://127.0.0.1:{ports.serving}"
    # The review page, deciding as a labelled development identity (refused when DAGSTER_DEPLOYMENT=prod).
    review_port = os.environ.get("REVIEW_PORT", "8790")
    env["REVIEW_PAGE_URL"] = f"http://127.0.0.1:{review_port}"
    env["REVIEW_DEV_USER"] = os.environ.get("REVIEW_DEV_USER", "").strip() or "dev-reviewer"
    cli = str(Path(sys.executable).parent / "orchestration-platform")
    logs = state_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    commands = {
        "events": [
            cli,
            "produce-events",
            "--rate",
            os.environ.get("EVENTS_RATE", "20"),
            "--history-hours",
            os.environ.get("EVENTS_HISTORY_HOURS", "6"),
        ],
        "serving": [cli, "serve", "--port", str(ports.serving)],
        "review": [cli, "review", "--port", review_port],
    }
    started: list[subprocess.Popen] = []
    try:
        for name, command in commands.items():
            with open(logs / f"{name}.log", "ab") as out:
                child = subprocess.Popen(
                    command,
                    env=env,
                    cwd=REPO_ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_reset_signals,
                    start_new_session=True,
                )
            started.append(child)
            log.info("%s: %s (pid %s, log %s)", name, " ".join(command[1:]), started[-1].pid, logs / f"{name}.log")
    except BaseException:
        for child in started:
            stop_process_group(child)
        raise
    return started
