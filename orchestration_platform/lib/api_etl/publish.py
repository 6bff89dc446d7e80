"""Write-audit-publish of one endpoint's rows into PostgreSQL (psycopg 3).

1. write: COPY the rows into `api_staging.<name>`; the rejects replace `api_rejects.<name>`.
2. audit: the blocking checks run against the staging table.
3. publish: only when every check passes, one transaction swaps staging in as `api.<name>`
   (or, for incremental endpoints, upserts it by primary key) and records the load in
   `api_etl.loads`. Otherwise staging is dropped and `api.<name>` keeps its previous version.

A process killed at any point leaves `api.<name>` as it was: the swap is a single transaction.
Identifiers are composed with `psycopg.sql.Identifier`; values always travel as parameters.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg import sql

from orchestration_platform.lib.api_etl.checks import (
    CHECK_KEY,
    CHECK_NOT_EMPTY,
    CHECK_REJECTS,
    CHECK_ROW_COUNT,
    CHECK_SCHEMA,
    CheckOutcome,
)
from orchestration_platform.lib.api_etl.endpoint_config import COLUMN_TYPES, EndpointConfig
from orchestration_platform.lib.api_etl.transform import TransformResult

Connector = Callable[[], AbstractContextManager[psycopg.Connection]]

PUBLISHED_SCHEMA = "api"
STAGING_SCHEMA = "api_staging"
REJECTS_SCHEMA = "api_rejects"
META_SCHEMA = "api_etl"

# How PostgreSQL's format_type() spells each declared column type.
FORMAT_TYPES = {"bigint": "bigint", "double precision": "double precision", "numeric": "numeric", "text": "text",
                "boolean": "boolean", "timestamptz": "timestamp with time zone", "date": "date", "jsonb": "jsonb"}


@dataclass
class LoadOutcome:
    endpoint: str
    load_id: str
    published: bool
    rows_staged: int
    rows_in_table: int | None
    rejects: int
    checks: list[CheckOutcome]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def failed_checks(self) -> list[CheckOutcome]:
        return [c for c in self.checks if not c.passed]


def _table(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def _columns(names: list[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def prepare_database(connect: Connector) -> None:
    """Create the platform's schemas and its loads table (idempotent, safe to run concurrently)."""
    with connect() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('api_etl:prepare'))")
        for schema in (PUBLISHED_SCHEMA, STAGING_SCHEMA, REJECTS_SCHEMA, META_SCHEMA):
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (endpoint text NOT NULL, load_id text NOT NULL, status text NOT NULL, "
            "finished_at timestamptz NOT NULL DEFAULT now(), rows_staged bigint, rows_in_table bigint, "
            "rejects bigint, reason text, PRIMARY KEY (endpoint, load_id))"
        ).format(_table(META_SCHEMA, "loads")))


def published_exists(conn: psycopg.Connection, name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s)", [f"{PUBLISHED_SCHEMA}.{name}"]).fetchone()
    return bool(row and row[0])


def latest_watermark(connect: Connector, endpoint: EndpointConfig) -> str | None:
    """The newest value of the incremental field already published (None before the first load)."""
    if endpoint.incremental is None:
        return None
    with connect() as conn:
        if not published_exists(conn, endpoint.name):
            return None
        row = conn.execute(sql.SQL("SELECT max({}) FROM {}").format(
            sql.Identifier(endpoint.incremental.field), _table(PUBLISHED_SCHEMA, endpoint.name))).fetchone()
    value = row[0] if row else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    return None if value is None else str(value)


def record_load(conn: psycopg.Connection, name: str, load_id: str, status: str, *, rows_staged: int | None = None,
                rows_in_table: int | None = None, rejects: int | None = None, reason: str | None = None) -> None:
    conn.execute(
        sql.SQL("INSERT INTO {} (endpoint, load_id, status, rows_staged, rows_in_table, rejects, reason) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (endpoint, load_id) DO UPDATE SET "
                "status = EXCLUDED.status, reason = EXCLUDED.reason, finished_at = now()"
                ).format(_table(META_SCHEMA, "loads")),
        [name, load_id, status, rows_staged, rows_in_table, rejects, reason],
    )


def record_failed_load(connect: Connector, name: str, load_id: str, reason: str) -> None:
    """Note an extraction failure in `api_etl.loads` (the published table is untouched)."""
    with connect() as conn:
        record_load(conn, name, load_id, "failed", reason=reason)


def _write_staging(conn: psycopg.Connection, endpoint: EndpointConfig, rows: Iterable[tuple[Any, ...]]) -> None:
    staging = _table(STAGING_SCHEMA, endpoint.name)
    types = [COLUMN_TYPES[kind] for kind in endpoint.columns.values()]
    definition = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(col), sql.SQL(kind))  # types from a fixed allow-list
        for col, kind in zip(endpoint.columns, types, strict=True)
    )
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(staging))
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(staging, definition))
    # Binary COPY: the server skips parsing text (timestamps above all), the slowest part of a load.
    with conn.cursor() as cur, cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            staging, _columns(list(endpoint.columns)))) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


def _write_rejects(conn: psycopg.Connection, endpoint: EndpointConfig, load_id: str, result: TransformResult) -> None:
    table = _table(REJECTS_SCHEMA, endpoint.name)
    with conn.transaction():
        conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (load_id text NOT NULL, rejected_at timestamptz NOT NULL "
                             "DEFAULT now(), reason text NOT NULL, record jsonb)").format(table))
        conn.execute(sql.SQL("DELETE FROM {}").format(table))  # the rejects of the latest load attempt
        if not result.rejects:
            return
        with conn.cursor() as cur, cur.copy(sql.SQL("COPY {} (load_id, reason, record) FROM STDIN").format(table)) as copy:
            for reject in result.rejects:
                # jsonb cannot hold \u0000; everything else is kept exactly as received.
                raw = json.dumps(reject.raw, default=str).replace("\\u0000", "\\ufffd")
                copy.write_row((load_id, reject.reason, raw))


def _column_types(conn: psycopg.Connection, schema: str, name: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        [f"{schema}.{name}"],
    ).fetchall()
    return dict(rows)


def _check_schema(conn: psycopg.Connection, endpoint: EndpointConfig, result: TransformResult,
                  table_exists: bool) -> CheckOutcome:
    declared = {col: FORMAT_TYPES[COLUMN_TYPES[kind]] for col, kind in endpoint.columns.items()}
    problems = []
    if result.missing_columns:
        problems.append(f"the source no longer sends declared column(s) {result.missing_columns} "
                        f"(it sends {result.unexpected_fields or 'no other fields'}); fix: update the "
                        "endpoint's columns in the config if the change is intended")
    staged = _column_types(conn, STAGING_SCHEMA, endpoint.name)
    if staged != declared:
        problems.append(f"staging table columns {staged} differ from the declaration {declared}")
    if endpoint.incremental and table_exists:
        published = _column_types(conn, PUBLISHED_SCHEMA, endpoint.name)
        if published != declared:
            problems.append(f"published table columns {published} differ from the declaration {declared}; fix: "
                            f"drop table api.{endpoint.name} to reload it in full with the new columns")
    metadata = {"declared_columns": len(declared), "missing_columns": len(result.missing_columns),
                "unexpected_fields": len(result.unexpected_fields), "sampled_records": result.sampled}
    if problems:
        return CheckOutcome(CHECK_SCHEMA, False, "schema drift: " + "; ".join(problems), metadata)
    extra = f" (extra fields ignored: {result.unexpected_fields})" if result.unexpected_fields else ""
    return CheckOutcome(CHECK_SCHEMA, True, f"all {len(declared)} declared columns present with their types{extra}",
                        metadata)


def _check_primary_key(conn: psycopg.Connection, endpoint: EndpointConfig) -> CheckOutcome:
    staging = _table(STAGING_SCHEMA, endpoint.name)
    keys = _columns(endpoint.primary_key)
    try:
        # Building the key index is the check: it fails on any duplicate or null, in one pass.
        with conn.transaction():
            conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
                staging, sql.Identifier(f"{endpoint.name}_pkey"), keys))
        return CheckOutcome(CHECK_KEY, True, f"primary key {endpoint.primary_key} is unique and never null",
                            {"duplicate_keys": 0, "null_keys": 0})
    except (psycopg.errors.UniqueViolation, psycopg.errors.NotNullViolation):
        pass
    nulls = sql.SQL(" OR ").join(sql.SQL("{} IS NULL").format(sql.Identifier(k)) for k in endpoint.primary_key)
    null_count = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(staging, nulls)).fetchone()[0]
    duplicates = conn.execute(sql.SQL(
        "SELECT {keys}, count(*) FROM {t} GROUP BY {keys} HAVING count(*) > 1 ORDER BY count(*) DESC, {keys}"
    ).format(keys=keys, t=staging)).fetchall()
    examples = ", ".join(f"{tuple(row[:-1]) if len(row) > 2 else row[0]!r} x{row[-1]}" for row in duplicates[:5])
    return CheckOutcome(
        CHECK_KEY, False,
        f"primary key {endpoint.primary_key}: {len(duplicates)} duplicated value(s) ({examples or 'none'}), "
        f"{null_count} null(s); the published table keeps its previous version",
        {"duplicate_keys": len(duplicates), "null_keys": null_count},
    )


def _previous_rows(conn: psycopg.Connection, name: str) -> int | None:
    row = conn.execute(
        sql.SQL("SELECT rows_staged FROM {} WHERE endpoint = %s AND status = 'published' "
                "ORDER BY finished_at DESC LIMIT 1").format(_table(META_SCHEMA, "loads")), [name]).fetchone()
    return None if row is None else row[0]


def _check_row_count(conn: psycopg.Connection, endpoint: EndpointConfig, staged: int) -> CheckOutcome:
    previous = _previous_rows(conn, endpoint.name)
    metadata: dict[str, Any] = {"rows": staged, "previous_rows": previous if previous is not None else -1}
    if endpoint.incremental:
        return CheckOutcome(CHECK_ROW_COUNT, True, f"incremental: {staged} new or changed rows", metadata)
    if previous is None:
        return CheckOutcome(CHECK_ROW_COUNT, True, f"first load: {staged} rows", metadata)
    floor = math.ceil(previous * (1 - endpoint.max_row_drop))
    change = (staged - previous) / previous if previous else 0.0
    metadata["change_pct"] = round(change * 100, 2)
    if staged < floor:
        return CheckOutcome(CHECK_ROW_COUNT, False,
                            f"{staged} rows vs {previous} in the previous load: a drop of {-change:.0%} is more "
                            f"than max_row_drop={endpoint.max_row_drop:.0%}; fix: check the source, or raise "
                            "max_row_drop if the shrink is expected", metadata)
    return CheckOutcome(CHECK_ROW_COUNT, True, f"{staged} rows vs {previous} in the previous load ({change:+.1%})",
                        metadata)


def _check_rejects(endpoint: EndpointConfig, result: TransformResult) -> CheckOutcome:
    rate = result.reject_rate
    metadata = {"rejects": len(result.rejects), "reject_rate": round(rate, 6)}
    reasons = sorted({r.reason.split(":")[0] for r in result.rejects})[:5]
    if rate > endpoint.max_reject_rate:
        return CheckOutcome(CHECK_REJECTS, False,
                            f"{len(result.rejects)} rejects ({rate:.1%}) exceed max_reject_rate="
                            f"{endpoint.max_reject_rate:.1%} (reasons: {reasons}); see api_rejects.{endpoint.name}",
                            metadata)
    detail = f" (see api_rejects.{endpoint.name})" if result.rejects else ""
    return CheckOutcome(CHECK_REJECTS, True, f"{len(result.rejects)} rejects ({rate:.2%}){detail}", metadata)


def _check_not_empty(endpoint: EndpointConfig, staged: int, table_exists: bool) -> CheckOutcome:
    if endpoint.incremental and table_exists:
        return CheckOutcome(CHECK_NOT_EMPTY, True, f"incremental: {staged} new rows (none is fine)", {"rows": staged})
    if staged < endpoint.min_rows:
        return CheckOutcome(CHECK_NOT_EMPTY, False,
                            f"{staged} rows, expected at least min_rows={endpoint.min_rows}; the source returned "
                            "(almost) nothing", {"rows": staged})
    return CheckOutcome(CHECK_NOT_EMPTY, True, f"{staged} rows (at least {endpoint.min_rows})", {"rows": staged})


def _publish(conn: psycopg.Connection, endpoint: EndpointConfig, table_exists: bool) -> None:
    published = _table(PUBLISHED_SCHEMA, endpoint.name)
    staging = _table(STAGING_SCHEMA, endpoint.name)
    if endpoint.incremental and table_exists:
        updates = [c for c in endpoint.columns if c not in endpoint.primary_key]
        action = sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates)) if updates else sql.SQL(
            "DO NOTHING")
        columns = _columns(list(endpoint.columns))
        conn.execute(sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {s} ON CONFLICT ({k}) {a}").format(
            t=published, c=columns, s=staging, k=_columns(endpoint.primary_key), a=action))
        conn.execute(sql.SQL("DROP TABLE {}").format(staging))
        return
    try:
        with conn.transaction():  # a savepoint inside the publish transaction
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(published))
    except psycopg.errors.DependentObjectsStillExist:
        # Consumers' views depend on the table: refill it in place so that they keep working.
        columns = _columns(list(endpoint.columns))
        conn.execute(sql.SQL("TRUNCATE {}").format(published))
        conn.execute(sql.SQL("INSERT INTO {} ({c}) SELECT {c} FROM {}").format(published, staging, c=columns))
        conn.execute(sql.SQL("DROP TABLE {}").format(staging))
        return
    conn.execute(sql.SQL("ALTER TABLE {} SET SCHEMA {}").format(staging, sql.Identifier(PUBLISHED_SCHEMA)))


def load_endpoint(connect: Connector, endpoint: EndpointConfig, result: TransformResult, *, load_id: str,
                  before_publish: Callable[[str], None] | None = None) -> LoadOutcome:
    """Stage, audit and (if every check passes) publish one endpoint's rows."""
    seconds: dict[str, float] = {}
    with connect() as conn:
        conn.autocommit = True  # each step below chooses its own transaction
        lock = f"api_etl:{endpoint.name}"
        # One load per endpoint at a time; the lock dies with the connection if the process does.
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [lock])
        try:
            started = time.perf_counter()
            table_exists = published_exists(conn, endpoint.name)
            _write_staging(conn, endpoint, result.rows)
            _write_rejects(conn, endpoint, load_id, result)
            seconds["write"] = time.perf_counter() - started
            staged = result.row_count
            checks = [
                _check_schema(conn, endpoint, result, table_exists),
                _check_primary_key(conn, endpoint),
                _check_row_count(conn, endpoint, staged),
                _check_rejects(endpoint, result),
                _check_not_empty(endpoint, staged, table_exists),
            ]
            seconds["audit"] = time.perf_counter() - started - seconds["write"]
            failed = [c for c in checks if not c.passed]
            rows_in_table: int | None = None
            if failed:
                with conn.transaction():
                    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_table(STAGING_SCHEMA, endpoint.name)))
                    record_load(conn, endpoint.name, load_id, "blocked", rows_staged=staged,
                                rejects=len(result.rejects), reason="; ".join(c.name for c in failed))
            else:
                if before_publish is not None:
                    before_publish(endpoint.name)
                publish_started = time.perf_counter()
                with conn.transaction():
                    _publish(conn, endpoint, table_exists)
                    rows_in_table = staged
                    if endpoint.incremental and table_exists:
                        rows_in_table = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                            _table(PUBLISHED_SCHEMA, endpoint.name))).fetchone()[0]
                    record_load(conn, endpoint.name, load_id, "published", rows_staged=staged,
                                rows_in_table=rows_in_table, rejects=len(result.rejects))
                seconds["publish"] = time.perf_counter() - publish_started
        finally:
            if not conn.broken:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", [lock])
    return LoadOutcome(endpoint.name, load_id, not failed, staged, rows_in_table, len(result.rejects), checks, seconds)
