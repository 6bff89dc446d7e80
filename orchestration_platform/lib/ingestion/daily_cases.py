"""The daily case reports in the warehouse: table layouts, partition audits and the regional summary.

Pure logic over a `Warehouse`; the Dagster assets and checks in `defs/ingestion` call it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from orchestration_platform.lib.ingestion.cleaning import DAILY_CASES
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
ISO_UTC_GLOB = "[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z"
ANOMALY_HISTORY = 7  # partitions of history the row count is compared with
ANOMALY_LOW, ANOMALY_HIGH = 0.5, 2.0  # allowed ratio to the history's median


@dataclass(frozen=True)
class PartitionAudit:
    """What the asset checks look at for one stored partition."""

    partition: str
    rows: int
    null_required: int
    unparsed_dates: int
    duplicate_keys: int


def missing_columns(warehouse: Warehouse) -> list[str]:
    """Required columns the stored table lacks ([] when all are there)."""
    have = set(warehouse.table_columns(CLEANED_TABLE.name))
    return [c for c in [CLEANED_TABLE.partition_column, *DAILY_CASES.required] if c not in have]


def _range_filter(warehouse: Warehouse, first: str, last: str) -> tuple[str, tuple]:
    """WHERE clause for the days first..last, on the table's fast path (row_key range in SQLite)."""
    if warehouse.dialect == "sqlite":
        return "row_key BETWEEN ? AND ?", (partition_bounds(first)[0], partition_bounds(last)[1])
    return f"{CLEANED_TABLE.partition_column} BETWEEN ? AND ?", (first, last)


def audit_partitions(warehouse: Warehouse, partitions: Sequence[str]) -> list[PartitionAudit]:
    """Per day: rows, nulls in required columns, unparseable timestamps, repeated keys (one query)."""
    if not partitions:
        return []
    where, params = _range_filter(warehouse, min(partitions), max(partitions))
    nulls = " + ".join(f"SUM(CASE WHEN {c} IS NULL THEN 1 ELSE 0 END)" for c in DAILY_CASES.required)
    if warehouse.dialect == "sqlite":
        bad_date = f"SUM(CASE WHEN reported_at GLOB '{ISO_UTC_GLOB}' AND julianday(reported_at) IS NOT NULL " \
                   "THEN 0 ELSE 1 END)"
    else:  # TIMESTAMPTZ only holds real instants; a null is the only way to be unparsed
        bad_date = "SUM(CASE WHEN reported_at IS NULL THEN 1 ELSE 0 END)"
    key = DAILY_CASES.key
    rows = warehouse.query(
        f"SELECT CAST({CLEANED_TABLE.partition_column} AS TEXT), count(*), COALESCE({nulls}, 0), "
        f"COALESCE({bad_date}, 0), count({key}) - count(DISTINCT {key}) "
        f'FROM "{CLEANED_TABLE.name}" WHERE {where} GROUP BY 1',
        params,
    )
    found = {str(day): PartitionAudit(str(day), int(n), int(nulls_), int(bad), int(dups))
             for day, n, nulls_, bad, dups in rows}
    return [found.get(p, PartitionAudit(p, 0, 0, 0, 0)) for p in partitions]


def stored_row_counts(warehouse: Warehouse, until: str) -> dict[str, int]:
    """Rows per stored partition up to `until` (inclusive), oldest first, in one query."""
    return {str(day): int(n) for day, n in warehouse.query(
        f'SELECT CAST({CLEANED_TABLE.partition_column} AS TEXT), count(*) FROM "{CLEANED_TABLE.name}" '
        f"WHERE {CLEANED_TABLE.partition_column} <= ? GROUP BY 1 ORDER BY 1",
        (until,),
    )}


def history_before(counts: dict[str, int], partition: str, limit: int = ANOMALY_HISTORY) -> list[int]:
    """Row counts of the latest `limit` partitions stored before `partition` (newest first)."""
    return [counts[day] for day in sorted((d for d in counts if d < partition), reverse=True)[:limit]]


def row_count_is_anomalous(rows: int, history: Sequence[int]) -> tuple[bool, float | None]:
    """Whether `rows` is outside [0.5, 2] x the median of `history` (needs 3 partitions of history)."""
    if len(history) < 3:
        return False, None
    median = float(statistics.median(history))
    return not (ANOMALY_LOW * median <= rows <= ANOMALY_HIGH * median), median


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
