"""Run the API ETL for a set of endpoints in one process: extract all concurrently, then
transform and write-audit-publish each one as soon as its records are in.

One endpoint's failure (HTTP, bad JSON, a database error) is recorded on its own outcome and
never stops or rolls back the others.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass

import psycopg

from orchestration_platform.lib.api_etl.endpoint_config import EndpointConfig, EndpointsConfig
from orchestration_platform.lib.api_etl.extract import ExtractError, Extractor, ExtractResult
from orchestration_platform.lib.api_etl.publish import (
    Connector,
    LoadOutcome,
    latest_watermark,
    load_endpoint,
    prepare_database,
    record_failed_load,
)
from orchestration_platform.lib.api_etl.transform import stream_transform

Progress = Callable[[str], None]


@dataclass
class EndpointRun:
    """What happened to one endpoint in a run."""

    endpoint: str
    extract: ExtractResult | None = None
    load: LoadOutcome | None = None
    error: str | None = None
    error_kind: str | None = None
    seconds: float = 0.0

    @property
    def published(self) -> bool:
        return self.load is not None and self.load.published

    @property
    def problem(self) -> str | None:
        """Why this endpoint was not published (None when it was)."""
        if self.error:
            return self.error
        if self.load is not None and not self.load.published:
            reasons = "; ".join(f"{c.name}: {c.description}" for c in self.load.failed_checks)
            return f"endpoint {self.endpoint!r}: publish blocked by checks ({reasons})"
        return None


async def run_endpoints_async(config: EndpointsConfig, endpoints: list[EndpointConfig], *, base_url: str,
                              connect: Connector, load_id: str, progress: Progress | None = None,
                              environ: Mapping[str, str] | None = None,
                              before_publish: Callable[[str], None] | None = None,
                              full_refresh: bool = False) -> list[EndpointRun]:
    """Extract, transform and publish `endpoints`; `full_refresh` re-reads incremental endpoints from the start."""
    say = progress or (lambda message: None)
    connections = ReusedConnections(connect)
    try:
        return await _run(config, endpoints, base_url=base_url, connect=connections, load_id=load_id, say=say,
                          environ=environ, before_publish=before_publish, full_refresh=full_refresh)
    finally:
        await asyncio.to_thread(connections.close)


async def _run(config: EndpointsConfig, endpoints: list[EndpointConfig], *, base_url: str, connect: Connector,
               load_id: str, say: Progress, environ: Mapping[str, str] | None,
               before_publish: Callable[[str], None] | None, full_refresh: bool) -> list[EndpointRun]:
    await asyncio.to_thread(prepare_database, connect)
    database_slots = asyncio.Semaphore(config.defaults.database_concurrency)
    done = 0
    every = max(1, len(endpoints) // 10)  # about ten progress lines per run, plus every problem

    def on_retry(name: str, attempt: int, reason: str, wait: float) -> None:
        say(f"{name}: attempt {attempt} failed ({reason}); retrying in {wait:.1f}s")

    async with Extractor(config.defaults, base_url, environ=environ, on_retry=on_retry) as extractor:

        async def one(endpoint: EndpointConfig) -> EndpointRun:
            nonlocal done
            run = EndpointRun(endpoint.name)
            started = time.perf_counter()
            try:
                incremental = endpoint.incremental and not full_refresh
                since = await asyncio.to_thread(latest_watermark, connect, endpoint) if incremental else None
                run.extract = await extractor.extract(endpoint, since=since)
                async with database_slots:
                    run.load = await asyncio.to_thread(_transform_and_load, connect, endpoint, run.extract, load_id,
                                                       before_publish)
            except ExtractError as error:
                run.error, run.error_kind = str(error), error.kind
            except Exception as error:  # a database or data error in one endpoint must not stop the others
                run.error = f"endpoint {endpoint.name!r}: {type(error).__name__}: {error}"
                run.error_kind = "load"
            if run.error:
                try:
                    await asyncio.to_thread(record_failed_load, connect, endpoint.name, load_id, run.error)
                except Exception as error:
                    say(f"{endpoint.name}: could not record the failed load ({type(error).__name__})")
            run.seconds = time.perf_counter() - started
            done += 1
            if not run.published or done % every == 0 or done == len(endpoints):
                say(f"[{done}/{len(endpoints)}] {endpoint.name}: {_summary(run)} in {run.seconds:.2f}s")
            return run

        return list(await asyncio.gather(*(one(e) for e in endpoints)))


class ReusedConnections:
    """Open connections shared by a run's loads, one thread at a time each: a new PostgreSQL
    connection costs ~10 ms of password hashing, which 100 small endpoints would pay 100 times."""

    def __init__(self, connect: Connector) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._idle: list[psycopg.Connection] = []
        self._opened: list[tuple[AbstractContextManager[psycopg.Connection], psycopg.Connection]] = []

    @contextmanager
    def __call__(self) -> Iterator[psycopg.Connection]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            manager = self._connect()
            conn = manager.__enter__()
            conn.autocommit = True
            with self._lock:
                self._opened.append((manager, conn))
        try:
            yield conn
        finally:
            # Only a healthy, idle connection is handed out again.
            if not conn.broken and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                with self._lock:
                    self._idle.append(conn)

    def close(self) -> None:
        with self._lock:
            opened, self._opened, self._idle = self._opened, [], []
        for manager, _ in opened:
            with suppress(Exception):
                manager.__exit__(None, None, None)


def _transform_and_load(connect: Connector, endpoint: EndpointConfig, extracted: ExtractResult, load_id: str,
                        before_publish: Callable[[str], None] | None) -> LoadOutcome:
    transformed = stream_transform(endpoint, extracted.records)  # fitted while COPY sends them
    outcome = load_endpoint(connect, endpoint, transformed, load_id=load_id, before_publish=before_publish)
    extracted.records = []  # loaded: free the raw JSON before the other endpoints finish
    return outcome


def _summary(run: EndpointRun) -> str:
    if run.error:
        return f"FAILED ({run.error})"
    assert run.load is not None
    if not run.load.published:
        return f"BLOCKED by {[c.name for c in run.load.failed_checks]}"
    return f"published {run.load.rows_staged} rows, {run.load.rejects} rejects"


def run_endpoints(config: EndpointsConfig, endpoints: list[EndpointConfig], **kwargs) -> list[EndpointRun]:
    """Synchronous entry point (Dagster ops, scripts, benchmarks)."""
    return asyncio.run(run_endpoints_async(config, endpoints, **kwargs))
