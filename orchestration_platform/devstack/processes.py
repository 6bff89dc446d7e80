"""Processes of the local stack, recorded so that any shell can find and stop them safely.

A process is recorded with its PID, its start time (field 22 of /proc/PID/stat, in clock ticks since
boot) and whether it leads its own process group. A PID is only signalled while it still has the
recorded start time, so a PID that the kernel has since given to another program is never touched.
Linux only (the dev stack's platform).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("orchestration_platform.devstack")

PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: the child only calls into it


@dataclass(frozen=True)
class ProcessRecord:
    """One process the stack started: what it is, how to recognise it, how to stop it."""

    name: str
    pid: int
    start_time: int | None  # /proc/PID/stat field 22; None when the process was already gone
    group: bool = False  # leads its own process group (its children are stopped with it)
    stop_signal: int = signal.SIGTERM
    url: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> ProcessRecord:
        return cls(
            name=str(raw["name"]),
            pid=int(raw["pid"]),
            start_time=raw.get("start_time"),
            group=bool(raw.get("group", False)),
            stop_signal=int(raw.get("stop_signal", signal.SIGTERM)),
            url=str(raw.get("url", "")),
        )

    @classmethod
    def of(cls, name: str, pid: int, **fields) -> ProcessRecord:
        return cls(name=name, pid=pid, start_time=process_start_time(pid), **fields)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so split after the last ")"
    return [raw[: raw.index(" ")], "comm", *raw[raw.rindex(")") + 2 :].split()]


def process_start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot (stat field 22), or None if it does not exist."""
    fields = _stat_fields(pid)
    return int(fields[21]) if fields else None


def _alive_fields(pid: int) -> list[str] | None:
    fields = _stat_fields(pid)
    if fields is None or fields[2] in ("Z", "X"):  # a zombie has exited; only its parent's wait is missing
        return None
    return fields


def is_running(record: ProcessRecord) -> bool:
    """True while the recorded process runs: same PID and same start time, not a zombie."""
    fields = _alive_fields(record.pid)
    return fields is not None and record.start_time is not None and int(fields[21]) == record.start_time


def group_members(record: ProcessRecord) -> list[int]:
    """Live PIDs in the recorded process group (its leader may have exited before the rest).

    While the leader runs with the recorded start time, the group is ours. Once the leader is gone,
    the kernel does not reuse its PID while any process still carries it as group id, so every
    member found is ours; if the PID runs again with another start time, the group is not ours.
    """
    if not record.group:
        return []
    leader = _alive_fields(record.pid)
    if leader is not None and int(leader[21]) != record.start_time:
        return []
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _alive_fields(int(entry.name))
            if fields is not None and int(fields[4]) == record.pid:
                members.append(int(entry.name))
    return members


def is_left(record: ProcessRecord) -> bool:
    """True while anything of the record runs: the process itself, or a member of its group."""
    return is_running(record) or bool(group_members(record))


def send(record: ProcessRecord, sig: int) -> None:
    """Signal the recorded process (and its group), never a PID that now belongs to another program."""
    if record.group and group_members(record):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pid, sig)
    elif is_running(record):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(record.pid, sig)


def stop_all(
    records: Iterable[ProcessRecord], grace_s: float = 8.0, reap: Callable[[], None] | None = None
) -> list[str]:
    """Ask every record to stop at once (its stop signal), SIGKILL what is left after `grace_s`.

    `reap` is called while waiting (a parent collects its exited children so they do not linger as
    zombies). Returns the names of the records that had to be killed.
    """
    pending = [r for r in records if is_left(r)]
    for record in pending:
        send(record, record.stop_signal)
    started = time.monotonic()
    deadline = started + grace_s
    while pending and time.monotonic() < deadline:
        time.sleep(0.05)
        if reap is not None:
            reap()
        for record in [r for r in pending if not is_left(r)]:
            log.info("%s stopped in %.1f s", record.name, time.monotonic() - started)
        pending = [r for r in pending if is_left(r)]
    for record in pending:
        send(record, signal.SIGKILL)
    kill_deadline = time.monotonic() + 5
    while any(is_left(r) for r in pending) and time.monotonic() < kill_deadline:
        time.sleep(0.05)
        if reap is not None:
            reap()
    return [r.name for r in pending]


def child_setup(death_signal: int = signal.SIGTERM) -> Callable[[], None]:
    """A `preexec_fn` for a stack's child: default signal handling, and `death_signal` when its parent dies.

    A shell that started the stack in the background ignores SIGINT and SIGTERM, and the child would
    inherit that (`dagster dev` then only dies to SIGKILL). The parent-death signal makes the child go
    when the stack's main process is killed outright (SIGKILL), which no handler can catch.
    """
    parent = os.getpid()

    def setup() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        _LIBC.prctl(PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), death_signal)

    return setup
