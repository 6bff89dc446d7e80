"""API ETL benchmarks (issue 3), on a PostgreSQL server and a demo sources server started here.

1. 100 endpoints answering after 250 ms each, materialized in ONE Dagster run, against the
   ideal: the slowest endpoint alone plus one run start (a trivial asset's materialization).
   The naive sequential time (each endpoint extracted and loaded one after another) is beside it.
2. 1,000,000 records into one table through the platform's path (fit to the declared columns,
   binary COPY into staging, blocking checks, swap) against `psql \\copy` of the same rows as CSV
   into a table of the same columns and primary key.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import dagster as dg
import psycopg

from benchmarks.result import BenchResult, stopwatch
from orchestration_platform.components.api_endpoint_assets import build_api_etl_assets
from orchestration_platform.defs.api_etl.sources import ApiSourcesResource
from orchestration_platform.defs.shared.postgres import PostgresResource
from orchestration_platform.devstack.services import free_port, start_server_postgres
from orchestration_platform.devstack.sources.json_api import synthetic_record
from orchestration_platform.lib.api_etl.endpoint_config import EndpointsConfig, parse_endpoints_config
from orchestration_platform.lib.api_etl.pipeline import run_endpoints
from orchestration_platform.lib.api_etl.publish import load_endpoint, prepare_database
from orchestration_platform.lib.api_etl.transform import stream_transform

SOURCES_SERVER = """
import sys, time
from orchestration_platform.devstack.services import start_sources_server
print(start_sources_server(int(sys.argv[1]), faults_enabled=False).url, flush=True)
time.sleep(86400)
"""
ENDPOINTS = 100
REPEATS = 3  # best of three: other work on a 2-core machine only ever slows a run down
LATENCY_MS = 250
BIG = 1_000_000
COLUMNS = {"id": "integer", "name": "text", "amount": "float", "active": "boolean", "created_at": "timestamp"}


def _endpoint(name: str, **params: object) -> dict:
    return {"name": name, "url": f"/api/synthetic/{name}", "params": params, "records_path": "data",
            "pagination": {"type": "page", "page_size": 1000, "total_pages_path": "total_pages"},
            "primary_key": ["id"], "columns": COLUMNS}


def _fan_out_config() -> EndpointsConfig:
    endpoints = [_endpoint(f"bench_{i:03d}", records=100, latency_ms=LATENCY_MS) for i in range(ENDPOINTS)]
    # All 100 in flight at once is the point; the per-host limit stays well above 100 requests/s.
    return parse_endpoints_config({"defaults": {"concurrency": ENDPOINTS, "requests_per_second_per_host": 1000,
                                                "database_concurrency": 8}, "endpoints": endpoints})


def _fresh_database(server_url: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def _run_start_seconds(instance: dg.DagsterInstance, assets: list[dg.AssetsDefinition]) -> float:
    dg.materialize(assets, instance=instance)  # warm imports and caches, as the measured runs are warm too
    times = []
    for _ in range(REPEATS):
        with stopwatch() as t:
            assert dg.materialize(assets, instance=instance).success
        times.append(t["seconds"])
    return min(times)


def _trivial_asset() -> dg.AssetsDefinition:
    @dg.asset
    def trivial() -> None:
        """Does nothing: its run measures what starting one run costs."""

    return trivial


def _same_assets_doing_nothing(real: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """The same 100 assets and 500 checks, reporting results without any HTTP or database work:
    what Dagster itself charges to start and record one run of these assets."""
    checks_by_asset: dict[dg.AssetKey, list[dg.AssetCheckSpec]] = {}
    for check in real.check_specs:
        checks_by_asset.setdefault(check.asset_key, []).append(check)

    @dg.multi_asset(name="api_endpoints_no_work", specs=list(real.specs), check_specs=list(real.check_specs))
    def no_work():
        for spec in real.specs:
            checks = [dg.AssetCheckResult(asset_key=spec.key, check_name=c.name, passed=True)
                      for c in checks_by_asset.get(spec.key, [])]
            yield dg.MaterializeResult(asset_key=spec.key, metadata={"rows_loaded": 100}, check_results=checks)

    return no_work


def bench_fan_out(server_url: str, sources_url: str) -> list[BenchResult]:
    config = _fan_out_config()
    assets = build_api_etl_assets(config)
    instance = dg.DagsterInstance.ephemeral()
    trivial_start = _run_start_seconds(instance, [_trivial_asset()])
    run_start = _run_start_seconds(instance, [_same_assets_doing_nothing(assets)])

    # Naive sequential: one endpoint after another (what one worker looping over them would do).
    sequential_db = _fresh_database(server_url)
    per_endpoint = []
    for endpoint in config.endpoints:
        with stopwatch() as t:
            [run] = run_endpoints(config, [endpoint], base_url=sources_url, load_id="seq",
                                  connect=lambda: psycopg.connect(sequential_db, autocommit=True))
        assert run.published, run.problem
        per_endpoint.append(t["seconds"])
    sequential = sum(per_endpoint)
    slowest = max(per_endpoint)

    times = []
    for _ in range(REPEATS):
        database = _fresh_database(server_url)
        with stopwatch() as t:
            result = dg.materialize([assets], instance=instance,
                                    resources={"postgres": PostgresResource(url=database),
                                               "api_sources": ApiSourcesResource(base_url=sources_url)})
        assert result.success and len(result.get_asset_materialization_events()) == ENDPOINTS
        times.append(t["seconds"])
    ours = min(times)
    return [
        BenchResult(
            name=f"{ENDPOINTS} endpoints x {LATENCY_MS} ms, one run (wall)", ours=ours, anchor=slowest + run_start,
            unit="s", anchor_name="ideal: slowest endpoint + one run start of the same assets",
            target="<= 2", target_ok=lambda r: r <= 2,
            notes=(f"slowest endpoint alone {slowest:.2f}s; run start = the same 100 assets + 500 checks "
                   f"reported with no work {run_start:.2f}s (a 1-asset run: {trivial_start:.2f}s); naive "
                   f"sequential {sequential:.1f}s ({sequential / ours:.0f}x ours); in-process executor, "
                   f"concurrency {ENDPOINTS}; best of {REPEATS} runs"),
        ),
        BenchResult(
            name=f"{ENDPOINTS} endpoints x {LATENCY_MS} ms vs a 1-asset run start", ours=ours,
            anchor=slowest + trivial_start, unit="s", anchor_name="slowest endpoint + start of a 1-asset run",
            notes="strict floor, not reachable by any Dagster run of 100 assets: recording their ~1,800 events "
                  "(planned, outputs, materializations, checks) is the run-start figure above",
        ),
        BenchResult(
            name=f"{ENDPOINTS} endpoints x {LATENCY_MS} ms vs naive sequential", ours=ours, anchor=sequential,
            unit="s", anchor_name="naive sequential (one endpoint after another)",
            notes="extract + write-audit-publish of each endpoint, one at a time, no Dagster",
        ),
    ]


def bench_million_rows(server_url: str, sources_url: str, workdir: Path) -> list[BenchResult]:
    records = [synthetic_record("big", n, 0, 0) for n in range(1, BIG + 1)]
    config = parse_endpoints_config({"endpoints": [_endpoint("big")]})
    endpoint = config.endpoints[0]
    database = _fresh_database(server_url)

    def connect() -> psycopg.Connection:
        return psycopg.connect(database, autocommit=True)

    prepare_database(connect)

    csv_path = workdir / "big.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        for r in records:
            writer.writerow([r["id"], r["name"], r["amount"], r["active"], r["created_at"]])
    with connect() as conn:
        conn.execute("CREATE TABLE copied (id bigint PRIMARY KEY, name text, amount double precision, "
                     "active boolean, created_at timestamptz)")
    psql = shutil.which("psql") or "psql"
    ours_times, anchor_times = [], []
    for attempt in range(REPEATS):  # alternate, so both see the same machine load
        with stopwatch() as t:
            outcome = load_endpoint(connect, endpoint, stream_transform(endpoint, records), load_id=f"bench{attempt}")
        assert outcome.published and outcome.rows_staged == BIG
        ours_times.append(t["seconds"])
        with connect() as conn:
            conn.execute("TRUNCATE copied")
        with stopwatch() as t:
            subprocess.run([psql, database, "-q", "-c",
                            f"\\copy copied (id, name, amount, active, created_at) FROM '{csv_path}' CSV"],
                           check=True, capture_output=True)
        anchor_times.append(t["seconds"])
    ours, anchor = min(ours_times), min(anchor_times)
    with connect() as conn:
        assert conn.execute("SELECT count(*) FROM copied").fetchone()[0] == BIG
    phases = ", ".join(f"{k} {v:.2f}s" for k, v in outcome.seconds.items())

    # The same million through HTTP too: 20 pages of 50,000 fetched together, parsed, then loaded.
    over_http = parse_endpoints_config({"defaults": {"timeout_s": 120}, "endpoints": [
        {**_endpoint("big_http", records=BIG), "pagination": {"type": "page", "page_size": 50_000,
                                                              "total_pages_path": "total_pages"}}]})
    with stopwatch() as t:
        [run] = run_endpoints(over_http, over_http.endpoints, base_url=sources_url, load_id="bench",
                              connect=connect)
    assert run.published and run.load is not None and run.load.rows_staged == BIG, run.problem
    end_to_end = t["seconds"]
    return [BenchResult(
        name="1,000,000 records over HTTP into one table (end to end)", ours=end_to_end, anchor=anchor, unit="s",
        anchor_name="psql \\copy of the same rows from a local CSV file",
        notes=(f"extract {run.extract.seconds:.2f}s (the demo server building 1M JSON records in one process "
               "dominates), then the load path above; no target: the anchor reads a local file"),
    ), BenchResult(
        name="1,000,000 records into one table", ours=ours, anchor=anchor, unit="s",
        anchor_name="psql \\copy of the same rows as CSV (same columns + primary key)", target="<= 1.5",
        target_ok=lambda r: r <= 1.5,
        notes=(f"ours = fit to declared types + binary COPY into staging + 5 blocking checks + swap ({phases}); "
               f"records already parsed from JSON in both cases; best of {REPEATS}, alternating; {BIG / ours:,.0f} rows/s"),
    )]


def run() -> list[BenchResult]:
    workdir = Path(tempfile.mkdtemp(prefix="op-bench-api-", dir="/tmp"))
    postgres = start_server_postgres(workdir / "pg", free_port())
    sources_port = free_port()
    # Its own process, like a real remote API: it must not share this process's GIL with the client.
    sources = subprocess.Popen([sys.executable, "-c", SOURCES_SERVER, str(sources_port)], stdout=subprocess.PIPE,
                               text=True)
    try:
        assert sources.stdout is not None and sources.stdout.readline().startswith("http://"), "sources server"
        sources_url = f"http://127.0.0.1:{sources_port}"
        return bench_fan_out(postgres.url, sources_url) + bench_million_rows(postgres.url, sources_url, workdir)
    finally:
        sources.terminate()
        sources.wait(timeout=10)
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)
