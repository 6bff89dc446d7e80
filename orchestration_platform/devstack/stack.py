"""The local stack behind `make dev`: embedded services, then `dagster dev` on top of them.

Every process the stack starts is recorded in `<state dir>/stack.json` as soon as it starts (PID and
start time, see `processes.py`), so that `dev status` and `dev down` find them from another shell, and
the next `dev up` stops what a killed stack left behind. Stopping is the same everywhere: the
applications (`dagster dev` with its children, the event producer, serving) all at once, then the
services they use (Kafka, PostgreSQL); whatever has not exited after a grace period is killed.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestration_platform.devstack.processes import (
    ProcessRecord,
    child_setup,
    is_left,
    is_running,
    stop_all,
)
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

SERVICES_LAST = ("kafka", "postgres")  # stopped after the applications that use them
APP_GRACE_S = 6.0
SERVICE_GRACE_S = 3.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class StackPorts:
    """Ports of the local stack; each one is moved by the environment variable in its name."""

    dagster: int = 3000
    sources: int = 8765
    kafka: int = 19092
    serving: int = 8780
    review: int = 8790

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
            review=port("REVIEW_PORT", cls.review),
        )


class StopRequested(Exception):
    """A stop signal arrived while the stack was starting."""


def state_dir() -> Path:
    return Path(os.environ.get("PLATFORM_STATE_DIR", str(REPO_ROOT / ".local"))).resolve()


def stack_file() -> Path:
    return state_dir() / "stack.json"


# --- The record of started processes -------------------------------------------------------------


def read_records(path: Path | None = None) -> list[ProcessRecord]:
    path = path or stack_file()
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except ValueError:  # a stack killed while writing: nothing usable in it
        return []
    return [ProcessRecord.from_json(r) for r in raw.get("processes", [])]


class StackRecord:
    """`stack.json`, rewritten (atomically) each time the stack starts a process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[ProcessRecord] = []

    def add(self, record: ProcessRecord) -> ProcessRecord:
        self.records.append(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"processes": [r.to_json() for r in self.records]}, indent=2))
        tmp.replace(self.path)
        return record

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def stop_recorded(records: list[ProcessRecord], path: Path | None, reap: Callable[[], None] | None = None) -> list[str]:
    """Stop the recorded processes (applications first, then services); forget the stack file.

    Returns the names of the processes that had to be killed after their grace period.
    """
    apps = [r for r in records if r.name not in SERVICES_LAST]
    services = [r for r in records if r.name in SERVICES_LAST]
    killed = stop_all(apps, APP_GRACE_S, reap) + stop_all(services, SERVICE_GRACE_S, reap)
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return killed


def clear_previous_stack() -> None:
    """Stop what a previous stack left behind (a killed main process), before any port is checked.

    A stack whose main process still runs is not left behind: it is refused with the way to stop it.
    """
    records = read_records()
    main = next((r for r in records if r.name == "stack"), None)
    if main is not None and is_running(main):
        raise ServiceError(
            f"a local stack is already running (pid {main.pid}, {main.url}): use it, or stop it with "
            "`orchestration-platform dev down`"
        )
    left = [r for r in records if is_left(r)]
    if left:
        log.warning(
            "stopping what a previous stack left behind: %s",
            ", ".join(f"{r.name} (pid {r.pid})" for r in left),
        )
        stop_recorded(left, None)
    with contextlib.suppress(FileNotFoundError):
        stack_file().unlink()


# --- Starting ------------------------------------------------------------------------------------


def start_watchdog(record: StackRecord) -> tuple[subprocess.Popen, int]:
    """Start the watchdog (see `watchdog.py`); returns it and the pipe end this process must keep open."""
    read_fd, write_fd = os.pipe()
    logs = state_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "watchdog.log", "ab") as out:
        watchdog = subprocess.Popen(
            [sys.executable, "-m", "orchestration_platform.devstack.watchdog", str(read_fd), str(record.path)],
            pass_fds=[read_fd],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C or a closing terminal must not reach it
        )
    os.close(read_fd)
    record.add(ProcessRecord.of("watchdog", watchdog.pid))
    return watchdog, write_fd


def start_local_services(
    ports: StackPorts, record: StackRecord | None = None, check_stop: Callable[[], None] = lambda: None
) -> tuple[list[RunningService], dict[str, str]]:
    """Start every local service; returns them and the environment that points the platform at them."""
    root = state_dir()
    (root / "logs").mkdir(parents=True, exist_ok=True)
    services: list[RunningService] = []
    env: dict[str, str] = {"DAGSTER_DEPLOYMENT": "local"}

    def started(service: RunningService, stop_signal: int) -> None:
        services.append(service)
        if record is not None and service.pid is not None and service.pid != os.getpid():
            record.add(ProcessRecord.of(service.name, service.pid, stop_signal=stop_signal, url=service.url))
        check_stop()

    try:
        if os.environ.get("POSTGRES_URL"):
            log.info("PostgreSQL: using POSTGRES_URL from the environment")
        else:
            postgres = start_embedded_postgres(root / "postgres")
            started(postgres, signal.SIGINT)  # "fast" shutdown: rolls back clients, writes a checkpoint
            env["POSTGRES_URL"] = postgres.url
            log.info("PostgreSQL: embedded server in %s (pid %s)", root / "postgres", postgres.pid)
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            log.info("Kafka: using KAFKA_BOOTSTRAP_SERVERS from the environment")
        else:
            kafka = start_kafka_broker(ports.kafka, log_file=root / "logs" / "kafka.log")
            started(kafka, signal.SIGTERM)
            env["KAFKA_BOOTSTRAP_SERVERS"] = kafka.url
            log.info("Kafka: tansu broker on %s (pid %s)", kafka.url, kafka.pid)
            if not os.environ.get("ML_EVENTS_TOPIC"):
                # The local broker keeps topics in memory, PostgreSQL keeps the consumed offsets: a new
                # topic name per start keeps a fresh topic's offsets from clashing with an old one's.
                env["ML_EVENTS_TOPIC"] = f"payments-{time.strftime('%Y%m%d-%H%M%S')}"
                log.info("Kafka: demo events go to topic %s", env["ML_EVENTS_TOPIC"])
        sources = start_sources_server(ports.sources)
        started(sources, signal.SIGTERM)
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


def start_child(
    name: str, command: list[str], env: dict[str, str], cwd: Path, log_file: Path | None, record: StackRecord
) -> subprocess.Popen:
    """A long-running child in its own process group, recorded, that dies with the stack's main process."""
    out = open(log_file, "ab") if log_file else None  # noqa: SIM115
    try:
        child = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            preexec_fn=child_setup(),  # default signals, SIGTERM when the main process dies
            start_new_session=True,
        )
    finally:
        if out:
            out.close()
    # `dagster dev` and the producer stop cleanly on SIGINT; uvicorn (serving) on either.
    record.add(ProcessRecord.of(name, child.pid, group=True, stop_signal=signal.SIGINT))
    return child


def start_dev_processes(
    ports: StackPorts, env: dict[str, str], record: StackRecord, check_stop: Callable[[], None] = lambda: None
) -> list[subprocess.Popen]:
    """Extra long-running processes of the dev stack: the payment event producer and model serving.

    Both are `orchestration-platform` subcommands in their own process group, output in
    `<state dir>/logs/`. `env` gains MODEL_SERVING_URL for `dagster dev`.
    """
    ensure_port_free(ports.serving, "model serving", "SERVING_PORT")
    env["MODEL_SERVING_URL"] = f"http://127.0.0.1:{ports.serving}"
    # The review page, deciding as a labelled development identity (refused when DAGSTER_DEPLOYMENT=prod).
    ensure_port_free(ports.review, "the review page", "REVIEW_PORT")
    review_port = ports.review
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
        "review": [cli, "review", "--port", str(review_port)],
    }
    started: list[subprocess.Popen] = []
    for name, command in commands.items():
        started.append(start_child(name, command, env, REPO_ROOT, logs / f"{name}.log", record))
        log.info("%s: %s (pid %s, log %s)", name, " ".join(command[1:]), started[-1].pid, logs / f"{name}.log")
        check_stop()
    return started


# --- The stack's life ----------------------------------------------------------------------------


def run_dev(ports: StackPorts, *, with_dagster: bool = True) -> int:
    """Start the stack and `dagster dev`; SIGINT (Ctrl-C), SIGTERM or SIGHUP stops everything started."""
    stop = {"signal": 0}

    def request_stop(signum, frame) -> None:
        stop["signal"] = signum

    def check_stop() -> None:
        if stop["signal"]:
            raise StopRequested(signal.Signals(stop["signal"]).name)

    clear_previous_stack()
    ensure_port_free(ports.dagster, "Dagster webserver", "DAGSTER_PORT")
    dagster_home = state_dir() / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())

    previous = {sig: signal.signal(sig, request_stop) for sig in STOP_SIGNALS}
    record = StackRecord(stack_file())
    record.add(ProcessRecord.of("stack", os.getpid(), url=f"http://127.0.0.1:{ports.dagster}"))
    watchdog, watchdog_pipe = start_watchdog(record)
    services: list[RunningService] = []
    children: list[subprocess.Popen] = []
    code = 0
    try:
        services, env = start_local_services(ports, record, check_stop)
        child_env = {**os.environ, **env, "DAGSTER_HOME": str(dagster_home)}
        os.environ.update(env)
        if with_dagster:
            from orchestration_platform.devstack.orphaned_runs import close_orphaned_runs

            orphaned = close_orphaned_runs(dagster_home)
            if orphaned:
                log.warning("marked %d run(s) of the previous stack failed (they died with it): %s",
                            len(orphaned), ", ".join(run_id[:8] for run_id in orphaned))
        landing_zone = get_settings().landing_zone
        landing_zone.mkdir(parents=True, exist_ok=True)  # so a first file can be dropped right away
        log.info("Landing zone: drop daily CSV files (daily_cases_YYYY-MM-DD.csv) into %s", landing_zone)
        children += start_dev_processes(ports, child_env, record, check_stop)
        if with_dagster:
            command = [str(Path(sys.executable).parent / "dagster"), "dev", "-w", str(REPO_ROOT / "workspace.yaml"),
                       "--host", "127.0.0.1", "--port", str(ports.dagster)]
            # cwd: not the repo, dagster warns about the repo's dagster.yaml there
            children.append(start_child("dagster dev", command, child_env, dagster_home, None, record))
        log.info("Dagster UI: http://127.0.0.1:%s  (Ctrl-C stops the whole stack)", ports.dagster)
        while not stop["signal"]:
            if with_dagster and children[-1].poll() is not None:
                log.error("dagster dev exited with code %s", children[-1].returncode)
                code = children[-1].returncode or 1
                break
            time.sleep(0.2)
    except StopRequested:
        pass
    finally:
        started = time.monotonic()
        if stop["signal"]:
            log.info("%s received: stopping the local stack", signal.Signals(stop["signal"]).name)
        own = [r for r in record.records if r.name not in ("stack", "watchdog", "sources")]
        killed = stop_recorded(own, None, reap=lambda: [c.poll() for c in children])
        if killed:
            log.warning("killed after their grace period: %s", ", ".join(killed))
        stop_services(services)  # the sources server thread; the processes are already gone
        record.remove()
        os.close(watchdog_pipe)  # the watchdog finds no stack file and exits
        with contextlib.suppress(subprocess.TimeoutExpired):
            watchdog.wait(timeout=5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("local stack stopped in %.1f s", time.monotonic() - started)
    return code


def stop_process_group(child: subprocess.Popen, timeout: float = 20, sig: int = signal.SIGINT) -> None:
    """`sig` (SIGINT) to the child's process group (its own session), SIGKILL if it has not exited in time."""
    if child.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, sig)
    try:
        child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
