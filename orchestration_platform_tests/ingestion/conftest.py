"""Fixtures for the ingestion tests: a private data dir, warehouse and landing zone per test,
and a helper that materializes the ingestion assets (with their checks) in process."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import httpx
import pytest

from orchestration_platform.defs.ingestion.assets import (
    cleaned_daily_cases,
    daily_regional_summary,
    raw_daily_cases,
)
from orchestration_platform.defs.ingestion.checks import cleaned_daily_cases_checks
from orchestration_platform.defs.ingestion.warehouse import WarehouseResource

INGESTION_DEFS = [raw_daily_cases, cleaned_daily_cases, cleaned_daily_cases_checks, daily_regional_summary]


@pytest.fixture
def ingestion_env(tmp_path: Path, sources_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path | str]:
    """PLATFORM_DATA_DIR, a SQLite warehouse and a landing zone private to this test; CSVs from the demo server."""
    data = tmp_path / "data"
    zone = tmp_path / "landing"
    zone.mkdir(parents=True)
    warehouse = data / "warehouse.sqlite"
    monkeypatch.setenv("PLATFORM_DATA_DIR", str(data))
    monkeypatch.setenv("INGESTION_WAREHOUSE_URL", f"sqlite:///{warehouse}")
    monkeypatch.setenv("INGESTION_LANDING_ZONE", str(zone))
    monkeypatch.setenv("INGESTION_CSV_URL_TEMPLATE", f"{sources_url}/csv/daily_cases/{{date}}.csv")
    httpx.post(f"{sources_url}/_faults/reset")
    return {"data": data, "zone": zone, "warehouse": warehouse, "sources": sources_url}


MaterializeFn = Callable[..., dg.ExecuteInProcessResult]


@pytest.fixture
def materialize_days(ingestion_env) -> MaterializeFn:
    """Materialize the ingestion assets and checks for one day, or a range as a single run."""

    def run(first: str, last: str | None = None, *, run_config=None, instance=None, raise_on_error=True,
            selection=None):
        tags = {}
        partition_key = first
        if last is not None and last != first:
            partition_key = None
            tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
        return dg.materialize(
            INGESTION_DEFS,
            partition_key=partition_key,
            tags=tags,
            run_config=run_config,
            instance=instance,
            resources={"warehouse": WarehouseResource()},
            raise_on_error=raise_on_error,
            selection=selection,
        )

    return run


def table_rows(warehouse: Path, table: str, order: str = "row_key") -> list[tuple]:
    with sqlite3.connect(warehouse) as conn:
        return conn.execute(f'SELECT * FROM "{table}" ORDER BY {order}').fetchall()
