"""Run ONE read against the hostile server in a fresh process and print what happened as JSON.

`python -m orchestration_platform_tests.hostile.run_case api <url> <postgres_url> <limits json>` runs the
API ETL pipeline (`run_endpoints`: extract, transform, publish) for one endpoint at `<url>`;
`... csv <url> <dest> <limits json>` runs `download_csv`. The output has the error, its kind, the wall
time and the peak RSS growth of this process during the read (the kernel's peak RSS, reset just before
the read, minus the RSS then: the memory of the read itself, C allocations such as zlib's included).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import uuid
from pathlib import Path


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def _start_measuring() -> int:
    """Reset the peak RSS (VmHWM) to the current RSS and return the current RSS (Linux >= 4.0)."""
    # If it cannot be reset, the peak includes the imports': an overstatement, never an understatement.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return _status_bytes("VmRSS")


def _growth(baseline: int) -> int:
    """Peak RSS since `_start_measuring` minus the RSS then: the memory the read itself needed, C allocations
    (zlib, socket buffers) included. getrusage's ru_maxrss cannot be reset, VmHWM can."""
    return _status_bytes("VmHWM") - baseline


def run_api(url: str, postgres_url: str, limits: dict) -> dict:
    import psycopg

    from orchestration_platform.lib.api_etl.endpoint_config import parse_endpoints_config
    from orchestration_platform.lib.api_etl.pipeline import run_endpoints

    endpoint_limits = {k: limits.pop(k) for k in ("deadline_s", "max_response_bytes", "max_json_depth") if k in limits}
    config = parse_endpoints_config({
        "defaults": {"timeout_s": 2, "max_attempts": 2, "backoff_initial_s": 0.05, "backoff_max_s": 0.1, **limits},
        "endpoints": [{"name": "hostile", "url": url, "records_path": "data", "primary_key": ["id"],
                       "columns": {"id": "integer", "name": "text"}, **endpoint_limits}],
    })
    baseline, started = _start_measuring(), time.monotonic()
    [run] = run_endpoints(config, config.endpoints, base_url="http://127.0.0.1",
                          connect=lambda: psycopg.connect(postgres_url, autocommit=True), load_id=uuid.uuid4().hex)
    return {"error": run.error, "kind": run.error_kind, "published": run.published,
            "seconds": time.monotonic() - started, "rss_growth": _growth(baseline)}


def run_csv(url: str, dest: str, limits: dict) -> dict:
    from orchestration_platform.lib.ingestion.download import (
        DownloadError,
        TransientDownloadError,
        download_csv,
    )

    baseline, started = _start_measuring(), time.monotonic()
    error, kind = None, None
    try:
        download_csv(url, Path(dest), attempts=2, backoff_s=0.05, timeout_s=2, **limits)
    except (DownloadError, TransientDownloadError) as failure:
        error, kind = str(failure), type(failure).__name__
    return {"error": error, "kind": kind, "seconds": time.monotonic() - started,
            "rss_growth": _growth(baseline), "dest_exists": Path(dest).exists(),
            "part_left": Path(dest + ".part").exists()}


if __name__ == "__main__":
    mode, url, target, limits_json = sys.argv[1:5]
    limits = json.loads(limits_json)
    outcome = run_api(url, target, limits) if mode == "api" else run_csv(url, target, limits)
    print(json.dumps(outcome))
