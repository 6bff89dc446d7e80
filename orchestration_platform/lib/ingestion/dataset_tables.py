"""A declared dataset's warehouse table and the audits its checks run on the stored rows.

Pure logic over a `Warehouse`; the Dagster checks built by the CSV datasets component call it.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from orchestration_platform.lib.ingestion.schema import CsvSchema
from orchestration_platform.lib.ingestion.warehouse import (
    TableSpec,
    Warehouse,
    WarehouseColumn,
    partition_bounds,
)

# declared type -> (SQLite type, PostgreSQL type)
WAREHOUSE_TYPES = {
    "integer": ("INTEGER", "BIGINT"), "float": ("REAL", "DOUBLE PRECISION"), "numeric": ("TEXT", "NUMERIC"),
    "text": ("TEXT", "TEXT"), "boolean": ("INTEGER", "BOOLEAN"), "date": ("TEXT", "DATE"),
    "timestamp": ("TEXT", "TIMESTAMPTZ"),
}
ISO_UTC_GLOB = "[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z"


@dataclass(frozen=True)
class PartitionAudit:
    """What the asset checks look at for one stored partition."""

    partition: str
    rows: int
    null_required: int
    unparsed_dates: int
    duplicate_keys: int


def table_spec(schema: CsvSchema, cadence: str = "daily") -> TableSpec:
    """The warehouse table of a dataset: one column per declared column, named like the dataset."""
    return TableSpec(
        name=schema.name,
        columns=tuple(WarehouseColumn(c.name, *WAREHOUSE_TYPES[c.type]) for c in schema.columns),
        partition_postgres_type="TEXT" if cadence == "hourly" else "DATE",
    )


def missing_columns(warehouse: Warehouse, table: TableSpec, schema: CsvSchema) -> list[str]:
    """Required columns the stored table lacks ([] when all are there)."""
    have = set(warehouse.table_columns(table.name))
    return [c for c in [table.partition_column, *schema.required] if c not in have]


def _range_filter(warehouse: Warehouse, table: TableSpec, first: str, last: str) -> tuple[str, tuple]:
    """WHERE clause for the partitions first..last, on the table's fast path (row_key range in SQLite)."""
    if warehouse.dialect == "sqlite":
        return "row_key BETWEEN ? AND ?", (partition_bounds(first)[0], partition_bounds(last)[1])
    return f"{table.partition_column} BETWEEN ? AND ?", (first, last)


def audit_partitions(warehouse: Warehouse, table: TableSpec, schema: CsvSchema,
                     partitions: Sequence[str]) -> list[PartitionAudit]:
    """Per partition: rows, nulls in required columns, unparseable dates, repeated keys (one query)."""
    if not partitions:
        return []
    where, params = _range_filter(warehouse, table, min(partitions), max(partitions))
    nulls = " + ".join(f'SUM(CASE WHEN "{c}" IS NULL THEN 1 ELSE 0 END)' for c in schema.required) or "0"
    stamps = [c.name for c in schema.columns if c.type == "timestamp" and c.required]
    if not stamps:
        bad_date = "0"
    elif warehouse.dialect == "sqlite":
        bad_date = " + ".join(f"SUM(CASE WHEN \"{c}\" GLOB '{ISO_UTC_GLOB}' AND julianday(\"{c}\") IS NOT NULL "
                              "THEN 0 ELSE 1 END)" for c in stamps)
    else:  # TIMESTAMPTZ only holds real instants; a null is the only way to be unparsed
        bad_date = " + ".join(f'SUM(CASE WHEN "{c}" IS NULL THEN 1 ELSE 0 END)' for c in stamps)
    key = schema.key_columns
    if not key:
        dups = "0"
    elif len(key) == 1:
        dups = f'count("{key[0]}") - count(DISTINCT "{key[0]}")'
    else:  # one text value per key: a separator that cannot occur in the values' text forms
        joined = " || char(31) || ".join(f'COALESCE(CAST("{k}" AS TEXT), \'\')' for k in key)
        if warehouse.dialect != "sqlite":
            joined = joined.replace("char(31)", "chr(31)")
        dups = f"count(*) - count(DISTINCT {joined})"
    rows = warehouse.query(
        f"SELECT CAST({table.partition_column} AS TEXT), count(*), COALESCE({nulls}, 0), "
        f'COALESCE({bad_date}, 0), {dups} FROM "{table.name}" WHERE {where} GROUP BY 1',
        params,
    )
    found = {str(p): PartitionAudit(str(p), int(n), int(nulls_), int(bad), int(d)) for p, n, nulls_, bad, d in rows}
    return [found.get(p, PartitionAudit(p, 0, 0, 0, 0)) for p in partitions]


def latest_partition(warehouse: Warehouse, table: TableSpec) -> str | None:
    latest = warehouse.query(f'SELECT max({table.partition_column}) FROM "{table.name}"')[0][0]
    return str(latest) if latest else None


def stored_row_counts(warehouse: Warehouse, table: TableSpec, until: str) -> dict[str, int]:
    """Rows per stored partition up to `until` (inclusive), oldest first, in one query."""
    return {str(p): int(n) for p, n in warehouse.query(
        f'SELECT CAST({table.partition_column} AS TEXT), count(*) FROM "{table.name}" '
        f"WHERE {table.partition_column} <= ? GROUP BY 1 ORDER BY 1",
        (until,),
    )}


def history_before(counts: dict[str, int], partition: str, limit: int = 7) -> list[int]:
    """Row counts of the latest `limit` partitions stored before `partition` (newest first)."""
    return [counts[p] for p in sorted((p for p in counts if p < partition), reverse=True)[:limit]]


def row_count_is_anomalous(rows: int, history: Sequence[int], band: tuple[float, float] = (0.5, 2.0)
                           ) -> tuple[bool, float | None]:
    """Whether `rows` is outside [low, high] x the median of `history` (needs 3 partitions of history)."""
    if len(history) < 3:
        return False, None
    median = float(statistics.median(history))
    return not (band[0] * median <= rows <= band[1] * median), median
