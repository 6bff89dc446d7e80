"""The demo dataset `daily_cases` in the warehouse: its table layout and the regional summary built on it.

Pure logic over a `Warehouse`; the summary asset in `defs/ingestion/regional_summary.py` calls it.
The cleaned table itself is declared in YAML (`defs/ingestion/datasets/defs.yaml`); `CLEANED_TABLE`
is the same layout, for the benchmark and the warehouse tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from orchestration_platform.lib.ingestion.warehouse import (
    TableSpec,
    Warehouse,
    WarehouseColumn,
    partition_bounds,
)

CLEANED_TABLE = TableSpec(
    name="daily_cases",
    columns=(
        WarehouseColumn("report_id", "INTEGER", "BIGINT"),
        WarehouseColumn("region", "TEXT", "TEXT"),
        WarehouseColumn("reported_at", "TEXT", "TIMESTAMPTZ"),
        WarehouseColumn("confirmed_cases", "INTEGER", "BIGINT"),
        WarehouseColumn("deaths", "INTEGER", "BIGINT"),
        WarehouseColumn("notes", "TEXT", "TEXT"),
    ),
)
SUMMARY_TABLE = TableSpec(
    name="daily_regional_summary",
    columns=(
        WarehouseColumn("region", "TEXT", "TEXT"),
        WarehouseColumn("reports", "INTEGER", "BIGINT"),
        WarehouseColumn("confirmed_cases", "INTEGER", "BIGINT"),
        WarehouseColumn("deaths", "INTEGER", "BIGINT"),
    ),
)


def _range_filter(warehouse: Warehouse, first: str, last: str) -> tuple[str, tuple]:
    """WHERE clause for the days first..last, on the table's fast path (row_key range in SQLite)."""
    if warehouse.dialect == "sqlite":
        return "row_key BETWEEN ? AND ?", (partition_bounds(first)[0], partition_bounds(last)[1])
    return f"{CLEANED_TABLE.partition_column} BETWEEN ? AND ?", (first, last)


def regional_summary(warehouse: Warehouse, partitions: Sequence[str]) -> dict[str, pa.Table]:
    """Per partition and region: reports, confirmed cases and deaths, from the cleaned table."""
    where, params = _range_filter(warehouse, min(partitions), max(partitions))
    rows = warehouse.query(
        f"SELECT CAST(partition_date AS TEXT), region, count(*), SUM(confirmed_cases), "
        f'COALESCE(SUM(deaths), 0) FROM "{CLEANED_TABLE.name}" WHERE {where} GROUP BY 1, 2 ORDER BY 1, 2',
        params,
    )
    by_partition: dict[str, list[tuple]] = {p: [] for p in partitions}
    for partition, *values in rows:
        if partition in by_partition:
            by_partition[partition].append(values)
    return {
        partition: pa.table(
            {name: pa.array([r[i] for r in values], type=kind) for i, (name, kind) in enumerate(
                (("region", pa.string()), ("reports", pa.int64()), ("confirmed_cases", pa.int64()),
                 ("deaths", pa.int64())))}
        )
        for partition, values in by_partition.items()
    }
