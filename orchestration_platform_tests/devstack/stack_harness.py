"""Start `orchestration-platform dev up` (or `make dev`) on free ports in a throwaway state directory, and
see every process it started, by PID and start time, so a test can prove that none survives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from orchestration_platform.devstack.processes import ProcessRecord, group_members, process_start_time
from orchestration_platform.devstack.services import free_port, port_is_open
from orchestration_platform.settings import REPO_ROOT

CLI = [sys.executable, "-m", "orchestration_platform.cli"]
MAKE_DEV = ["make", "--no-print-directory", "-o", "install", "dev"]  # -o install: never reinstall in a test
EVERY_PROCESS = {"stack", "watchdog", "postgres", "kafka", "events", "serving", "review"}


def stack_env(name: str) -> dict[str, str]:
    """Environment for a stack of its own: state and data under /tmp (embedded PostgreSQL must stay out
    of /root), every port free, no POSTGRES_URL/KAFKA_BOOTSTRAP_SERVERS (the stack starts its own)."""
    state = Path("/tmp") / f"op-stack-{name}"
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_URL", "KAFKA_BOOTSTRAP_SERVERS")}
    env.update(
        PLATFORM_STATE_DIR=str(state),
        PLATFORM_DATA_DIR=str(state / "data"),
        DAGSTER_PORT=str(free_port()),
        SOURCES_PORT=str(free_port()),
        KAFKA_PORT=str(free_port()),
        SERVING_PORT=str(free_port()),
        REVIEW_PORT=str(free_port()),
        EVENTS_HISTORY_HOURS="1",
    )
    return env


def state_dir(env: dict[str, str]) -> Path:
    return Path(env["PLATFORM_STATE_DIR"])


def ports(env: dict[str, str]) -> list[int]:
    return [int(env[k]) for k in ("DAGSTER_PORT", "SOURCES_PORT", "KAFKA_PORT", "SERVING_PORT", "REVIEW_PORT")]


def start(env: dict[str, str], *, with_dagster: bool, via_make: bool = False) -> subprocess.Popen:
    """`dev up` in a session of its own (as a terminal's foreground job); output in <state>/dev_up.log."""
    state_dir(env).mkdir(parents=True, exist_ok=True)
    if via_make:
        assert with_dagster, "`make dev` always starts dagster dev"
        command = MAKE_DEV
    else:
        command = [*CLI, "dev", "up", *([] if with_dagster else ["--no-dagster"])]
    with open(state_dir(env) / "dev_up.log", "ab") as out:
        return subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def output(env: dict[str, str]) -> str:
    return (state_dir(env) / "dev_up.log").read_text(errors="replace")


def read_records(env: dict[str, str]) -> list[ProcessRecord]:
    path = state_dir(env) / "stack.json"
    if not path.exists():
        return []
    return [ProcessRecord.from_json(r) for r in json.loads(path.read_text())["processes"]]


def wait_until_up(env: dict[str, str], proc: subprocess.Popen, *, with_dagster: bool,
                  timeout: float = 120) -> list[ProcessRecord]:
    """Wait for every process to be recorded and listening (the webserver too, with `dagster dev`)."""
    wanted = EVERY_PROCESS | ({"dagster dev"} if with_dagster else set())
    listening = ports(env) if with_dagster else ports(env)[1:]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"dev up exited with {proc.returncode}:\n{output(env)[-3000:]}"
        records = read_records(env)
        if wanted <= {r.name for r in records} and all(port_is_open(p) for p in listening):
            return records
        time.sleep(0.3)
    raise AssertionError(f"the stack was not up within {timeout}s:\n{output(env)[-3000:]}")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def every_process(records: list[ProcessRecord]) -> dict[int, int]:
    """PID -> start time of everything the stack runs: each recorded process, every member of a recorded
    process group (`dagster dev`'s webserver, daemon, code server, run workers), PostgreSQL's backends."""
    pids = {r.pid for r in records}
    for record in records:
        pids.update(group_members(record))
        if record.name == "postgres":
            pids.update(_children(record.pid))
    return {pid: start for pid in pids if (start := process_start_time(pid)) is not None}


def survivors(snapshot: dict[int, int]) -> dict[int, str]:
    """The processes of `snapshot` that still run (same PID and start time, not a zombie): PID -> command."""
    alive = {}
    for pid, start in snapshot.items():
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] not in ("Z", "X") and int(fields[19]) == start:
            alive[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return alive


def wait_for_no_survivors(snapshot: dict[int, int], timeout: float) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while (alive := survivors(snapshot)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def dev(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "dev", *args], env=env, capture_output=True, text=True, timeout=timeout)


def processes_mentioning(marks: tuple[str, ...]) -> dict[int, str]:
    """Live processes whose command line contains one of `marks` (a state directory, a port): PID -> command."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X") and any(mark in command for mark in marks):
            found[int(entry.name)] = command
    return found
