"""Fixtures of the review page tests: the review app (`orchestration-platform review`) and, in front of it,
a real authenticating reverse proxy process (`signin_proxy.py`), each on a free port, stopped by PID.
The ML fixtures (fresh database, topic, resources, serving) are shared with the ML tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration_platform.devstack.services import free_port, wait_for_port
from orchestration_platform.devstack.stack import stop_process_group
from orchestration_platform_tests.ml.conftest import (  # noqa: F401  (fixtures)
    instance,
    ml_env,
    ml_resources,
    serving,
    serving_resource,
    topic,
)

CLI = str(Path(sys.executable).parent / "orchestration-platform")
PROXY_SECRET = "proxy-s3cret-0123456789abcdef"
SESSION_KEY = "session-k3y-0123456789abcdef"
# user -> [password, email, groups]: who can sign in at the proxy (the SSO of the tests).
USERS = {
    "alice": ["alice-pw", "alice@example.com", ["ml-approvers"]],
    "bob": ["bob-pw", "bob@example.com", ["ml-approvers"]],
    "mallory": ["mallory-pw", "mallory@example.com", ["staff"]],
}


class Process:
    """A subprocess in its own process group with its output in a file (read by the no-secret checks)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.url = f"http://127.0.0.1:{port}"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip
        try:
            wait_for_port(port, name, timeout=60, proc=self.proc)
        except Exception:
            self.stop()
            raise

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        stop_process_group(self.proc, timeout=15, sig=signal.SIGTERM)


def review_env(postgres_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REVIEW_", "ML_APPROV"))}
    return env | {
        "POSTGRES_URL": postgres_url,
        "REVIEW_PROXY_SECRET": PROXY_SECRET,
        "REVIEW_SESSION_KEY": SESSION_KEY,
        "ML_APPROVER_GROUPS": "ml-approvers",
        "ML_APPROVERS": "carol@example.com",
    } | extra


@pytest.fixture
def review_app(fresh_database: str, tmp_path: Path) -> Iterator[Process]:
    """The review app on a free port, trusting only requests that carry the proxy's shared secret."""
    port = free_port()
    app = Process("review page", [CLI, "review", "--port", str(port)], review_env(fresh_database), port,
                  tmp_path / "review.log")  # fmt: skip
    yield app
    app.stop()


@pytest.fixture
def signin_proxy(review_app: Process, tmp_path: Path) -> Iterator[Process]:
    """The authenticating reverse proxy in front of the review app."""
    port = free_port()
    env = {**os.environ, "REVIEW_PROXY_SECRET": PROXY_SECRET, "SIGNIN_USERS": json.dumps(USERS)}
    proxy = Process("sign-in proxy", [sys.executable, "-m", "orchestration_platform_tests.review.signin_proxy",
                                      str(port), review_app.url], env, port, tmp_path / "proxy.log")  # fmt: skip
    yield proxy
    proxy.stop()
