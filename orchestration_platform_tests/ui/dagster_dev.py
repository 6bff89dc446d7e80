"""Run the real `dagster dev` (webserver + daemon + code server) on free ports for a test or benchmark,
and talk to its GraphQL API. Stopped by its process group, never by name."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from orchestration_platform.devstack.services import free_port
from orchestration_platform.devstack.stack import stop_process_group
from orchestration_platform.settings import REPO_ROOT

RUNS_QUERY = """
query { runsOrError(limit: 50) { ... on Runs { results { runId status tags { key value } } } } }
"""


def graphql(base_url: str, query: str, variables: dict | None = None) -> dict:
    response = httpx.post(f"{base_url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def runs(base_url: str) -> dict[str, dict]:
    """Run id -> {status, tags} for the latest runs."""
    results = graphql(base_url, RUNS_QUERY)["runsOrError"]["results"]
    return {r["runId"]: {"status": r["status"], "tags": {t["key"]: t["value"] for t in r["tags"]}} for r in results}


@contextlib.contextmanager
def running_dagster_dev(workdir: Path, env: dict[str, str], timeout_s: float = 120) -> Iterator[str]:
    """Start `dagster dev` with the repo's dagster.yaml in a temporary DAGSTER_HOME; yield its base URL."""
    home = workdir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    log = open(workdir / "dagster_dev.log", "ab")  # noqa: SIM115
    dagster = str(Path(sys.executable).parent / "dagster")
    proc = subprocess.Popen(
        # setsid: its own process group to stop; default signals: a background shell ignores SIGINT
        ["setsid", "env", "--default-signal=INT,TERM", dagster, "dev", "-w", str(REPO_ROOT / "workspace.yaml"),
         "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **env, "DAGSTER_HOME": str(home)},
        cwd=home,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {proc.returncode}; see {workdir / 'dagster_dev.log'}")
            with contextlib.suppress(httpx.HTTPError, AssertionError, KeyError):
                data = graphql(base_url, "{ workspaceOrError { ... on Workspace { locationEntries { "
                                         "locationOrLoadError { __typename } } } } }")
                entries = data["workspaceOrError"]["locationEntries"]
                if entries and all(e["locationOrLoadError"] and
                                   e["locationOrLoadError"]["__typename"] == "RepositoryLocation" for e in entries):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"dagster dev not ready in {timeout_s}s; see {workdir / 'dagster_dev.log'}")
            time.sleep(0.5)
        yield base_url
    finally:
        stop_process_group(proc, timeout=30)
        log.close()
