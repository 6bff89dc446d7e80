"""The stack's watchdog: when the stack's main process dies, however it dies, stop what it recorded.

`dev up` starts this first, in its own session, holding the read end of a pipe whose only write end
the main process keeps. The read returns (end of file) when the main process is gone, also after a
SIGKILL that no handler sees. A clean stop has already stopped everything and removed the stack file,
so then there is nothing left to do. It catches what a parent-death signal cannot: the embedded
PostgreSQL (started by `pg_ctl`, so not our child) and the children of `dagster dev`.

    python -m orchestration_platform.devstack.watchdog <read fd> <stack file>
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path


def main(read_fd: int, stack_path: Path) -> int:
    from orchestration_platform.devstack.stack import read_records, stop_recorded

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the stack is the stack's to handle
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # so is a closing terminal
    with contextlib.suppress(OSError):
        while os.read(read_fd, 1024):
            pass
    if not stack_path.exists():
        return 0
    records = [r for r in read_records(stack_path) if r.pid != os.getpid()]
    stop_recorded(records, stack_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), Path(sys.argv[2])))
