"""Fixtures for the ingestion tests: a private data dir, warehouse and landing zone per test,
and a helper that materializes the ingestion assets (with their checks) in process."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import httpx
import pytest

from orchestration_platform.defs.ingestion.dataset_assets import cleaned_key, raw_key, raw_op_name
from orchestration_platform.defs.ingestion.files import IngestionFilesResource
from orchestration_platform.defs.ingestion.regional_summary import SUMMARY_KEY
from orchestration_platform.defs.ingestion.warehouse import WarehouseResource
from orchestration_platform_tests.ingestion.component_loading import project_ingestion_defs

DATASET = "daily_cases"
RAW_KEY, CLEANED_KEY = raw_key(DATASET), cleaned_key(DATASET)
RAW_OP = raw_op_name(DATASET)
INGESTION = project_ingestion_defs()  # defs/ingestion loaded from its YAML, the way `dg` loads it
INGESTION_DEFS = [a for a in INGESTION.assets if a.key.path[1] == DATASET] + [
    c for c in INGESTION.asset_checks if any(k.asset_key.path[1] == DATASET for k in c.check_keys)]
RESOURCES = {"warehouse": WarehouseResource(), "ingestion_files": IngestionFilesResource()}
__all__ = ["CLEANED_KEY", "RAW_KEY", "RAW_OP", "SUMMARY_KEY", "raw_file_path"]


def raw_file_path(partition: str, dataset: str = DATASET) -> Path:
    """Where the raw bytes of one partition are kept (under PLATFORM_DATA_DIR)."""
    return IngestionFilesResource().raw_file(dataset, partition)


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
            resources=RESOURCES,
            raise_on_error=raise_on_error,
            selection=selection,
        )

    return run


def table_rows(warehouse: Path, table: str, order: str = "row_key") -> list[tuple]:
    with sqlite3.connect(warehouse) as conn:
        return conn.execute(f'SELECT * FROM "{table}" ORDER BY {order}').fetchall()
