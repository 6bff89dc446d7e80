"""Write daily partitions into the warehouse: SQLite (default) or PostgreSQL, chosen by URL.

`Warehouse.replace_partitions` replaces exactly the given partitions' rows in ONE transaction
(delete, then bulk insert), so a re-run gives the same table and a failure leaves the previous
rows in place. Bulk paths: Arrow ingest through the ADBC SQLite driver (columns bound in C, one
transaction, tuned PRAGMAs) and `COPY` on PostgreSQL (psycopg 3). All SQLite access goes through
the ADBC driver's SQLite, so one SQLite library handles the warehouse file in a process.

In SQLite a partitioned table is clustered by partition: its `row_key INTEGER PRIMARY KEY` is
`day ordinal * 2**32 + row number`, so replacing or reading a day is a primary-key range and no
secondary index has to be kept up to date on load. Partition keys are ISO dates (`YYYY-MM-DD`).
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from orchestration_platform.lib.url_redaction import redact_url

ROWS_PER_PARTITION = 2**32
PartitionRows = pa.Table | Iterable[pa.Table]
SQLITE_PRAGMAS = (
    # Only takes effect while the file is still empty (before WAL is set): 64 KiB pages suit bulk loads
    # and partition scans (a quarter fewer seconds per 1M-row load than 16 KiB: fewer pages, WAL frames and
    # page splits per row; `make bench` measures it)
    "PRAGMA page_size=65536",
    "PRAGMA journal_mode=WAL",  # readers (checks, the UI's users) never block the loader
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=60000",
    "PRAGMA cache_size=-65536",
    "PRAGMA temp_store=MEMORY",
)


class WarehouseError(RuntimeError):
    """The warehouse cannot be used as asked; the message says why and how to fix it (no secrets)."""


@dataclass(frozen=True)
class WarehouseColumn:
    name: str
    sqlite_type: str
    postgres_type: str


@dataclass(frozen=True)
class TableSpec:
    """A partitioned warehouse table: its columns (without the partition column) and partition column."""

    name: str
    columns: tuple[WarehouseColumn, ...]
    partition_column: str = "partition_date"
    partition_postgres_type: str = "DATE"  # TEXT for hourly keys (YYYY-MM-DD-HH:MM)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def partition_ordinal(partition: str) -> int:
    """A partition key as a number: days since year 1 (`YYYY-MM-DD`) or hours (`YYYY-MM-DD-HH:MM`)."""
    try:
        if len(partition) == 10:
            return dt.date.fromisoformat(partition).toordinal()
        moment = dt.datetime.strptime(partition, "%Y-%m-%d-%H:%M")
        return moment.toordinal() * 24 + moment.hour
    except ValueError:
        raise WarehouseError(
            f"partition {partition!r} is not a date: partition keys are YYYY-MM-DD (hourly: YYYY-MM-DD-HH:MM)"
        ) from None


def partition_bounds(partition: str) -> tuple[int, int]:
    """The SQLite `row_key` range of one partition."""
    ordinal = partition_ordinal(partition)
    return ordinal * ROWS_PER_PARTITION, (ordinal + 1) * ROWS_PER_PARTITION - 1


def _iso_text(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """UTC timestamps as ISO-8601 text (`2026-01-31T09:30:00Z`), computed in Arrow."""
    text = pc.cast(pc.cast(column, pa.timestamp("s")), pa.string())
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    rows = len(text)
    if rows and text.null_count == 0:  # the usual case: every value is `YYYY-MM-DD HH:MM:SS`, fixed width
        offsets = np.frombuffer(text.buffers()[1], dtype=np.int32, count=rows + 1, offset=text.offset * 4)
        if offsets[-1] - offsets[0] == 19 * rows and (np.diff(offsets) == 19).all():
            out = np.empty((rows, 20), dtype=np.uint8)
            out[:, :19] = np.frombuffer(text.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]].reshape(rows, 19)
            out[:, 10], out[:, 19] = ord("T"), ord("Z")
            return pa.StringArray.from_buffers(
                rows, pa.py_buffer(np.arange(0, 20 * rows + 1, 20, dtype=np.int32)), pa.py_buffer(out))
    return pc.binary_join_element_wise(pc.replace_substring(text, " ", "T", max_replacements=1), "Z", "")


class Warehouse:
    """A connection factory and the partition operations for one warehouse URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        scheme = urlsplit(url).scheme.split("+", 1)[0]
        if scheme == "sqlite":
            self.dialect = "sqlite"
            path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else ""
            if not path:
                raise WarehouseError(f"warehouse URL {url!r}: write SQLite URLs as sqlite:///absolute/path.sqlite")
            self.sqlite_path = Path("/" + path.lstrip("/")) if url.startswith("sqlite:////") else Path(path)
        elif scheme in ("postgresql", "postgres"):
            self.dialect = "postgresql"
        else:
            raise WarehouseError(
                f"warehouse URL {redact_url(url)!r}: scheme {scheme!r} is not supported; "
                "use sqlite:///path/warehouse.sqlite or postgresql://USER:PASSWORD@HOST:PORT/DB"
            )

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    @contextmanager
    def connect(self) -> Iterator[Any]:
        """A DB-API connection in autocommit mode (ADBC SQLite or psycopg 3); callers BEGIN/COMMIT themselves."""
        if self.dialect == "sqlite":
            import adbc_driver_sqlite.dbapi as adbc_sqlite

            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            conn = adbc_sqlite.connect(str(self.sqlite_path), autocommit=True)
            try:
                for pragma in SQLITE_PRAGMAS:
                    _sqlite_rows(conn, pragma)
                yield conn
            finally:
                conn.close()
        else:
            import psycopg

            try:
                conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            except psycopg.OperationalError as error:
                message = str(error).replace(self.url, self.display_url)
                raise WarehouseError(f"cannot connect to the warehouse {self.display_url}: {message}") from None
            try:
                yield conn
            finally:
                conn.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run a read query written with `?` placeholders on either dialect."""
        with self.connect() as conn:
            if self.dialect == "sqlite":
                return _sqlite_rows(conn, sql, params)
            return list(conn.execute(sql.replace("?", "%s"), params).fetchall())

    def table_columns(self, table: str) -> list[str]:
        """The table's columns, or [] when it does not exist."""
        if self.dialect == "sqlite":
            return [row[1] for row in self.query(f'PRAGMA table_info("{table}")')]
        return [row[0] for row in self.query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
            (table,))]

    def partition_filter(self, spec: TableSpec, partition: str) -> tuple[str, tuple]:
        """A WHERE clause (with `?` placeholders) selecting one partition's rows, using the fast path."""
        if self.dialect == "sqlite":
            return "row_key BETWEEN ? AND ?", partition_bounds(partition)
        return f"{spec.partition_column} = ?", (partition,)

    def _create_sql(self, spec: TableSpec) -> list[str]:
        if self.dialect == "sqlite":
            cols = ", ".join(f'"{c.name}" {c.sqlite_type}' for c in spec.columns)
            return [f'CREATE TABLE IF NOT EXISTS "{spec.name}" (row_key INTEGER PRIMARY KEY, '
                    f'"{spec.partition_column}" TEXT NOT NULL, {cols})']
        cols = ", ".join(f'"{c.name}" {c.postgres_type}' for c in spec.columns)
        return [
            f'CREATE TABLE IF NOT EXISTS "{spec.name}" ("{spec.partition_column}" {spec.partition_postgres_type} '
            f'NOT NULL, {cols})',
            f'CREATE INDEX IF NOT EXISTS "{spec.name}_{spec.partition_column}_idx" '
            f'ON "{spec.name}" ("{spec.partition_column}")',
        ]

    def _check_schema(self, conn: Any, spec: TableSpec) -> None:
        if self.dialect == "postgresql":  # on the writer's connection: the table may be new in this transaction
            have = {row[0] for row in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (spec.name,))}
        else:
            have = {row[1] for row in _sqlite_rows(conn, f'PRAGMA table_info("{spec.name}")')}
        missing = [c for c in [spec.partition_column, *spec.column_names] if c not in have]
        if missing:
            raise WarehouseError(
                f"table {spec.name!r} in {self.display_url} lacks column(s) {', '.join(missing)} "
                f"(it has {', '.join(sorted(have))}): migrate it or drop it so the pipeline recreates it"
            )

    def replace_partitions(self, spec: TableSpec, batches: Mapping[str, PartitionRows]) -> dict[str, int]:
        """Replace each partition's rows, all in one transaction. Returns rows written per partition.

        A partition's rows are one Arrow table or an iterable of tables (loaded one after another; in SQLite
        the next table is taken from the iterable while the previous one is being inserted).
        """
        if self.dialect == "sqlite":
            return self._replace_sqlite(spec, batches)
        return self._replace_postgres(spec, batches)

    def _replace_sqlite(self, spec: TableSpec, batches: Mapping[str, PartitionRows]) -> dict[str, int]:
        written: dict[str, int] = {}
        with self.connect() as conn:
            for statement in self._create_sql(spec):
                _sqlite_rows(conn, statement)
            self._check_schema(conn, spec)
            cursor = conn.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            # The ADBC insert runs in C without the GIL: while it writes one table in the writer thread, this
            # thread takes the next from the iterable (e.g. cleans the next slice). One insert at a time, in order.
            writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-ingest")
            pending: Future | None = None
            try:
                for partition, rows in batches.items():
                    low, high = partition_bounds(partition)
                    if pending is not None:
                        pending.result()
                        pending = None
                    cursor.execute(f'DELETE FROM "{spec.name}" WHERE row_key BETWEEN ? AND ?', (low, high))
                    keyed_by_sqlite = _nothing_above(cursor, spec, low)
                    day = partition  # validated by partition_bounds
                    next_key = low
                    for table in _tables(spec, partition, rows):
                        if table.num_rows:  # Arrow columns bound in C by the ADBC driver: no Python row objects
                            batches_out = _sqlite_batches(spec, day, next_key, table, keyed_by_sqlite)
                            if pending is not None:
                                pending.result()
                            pending = writer.submit(_ingest, cursor, spec.name, batches_out)
                        next_key += table.num_rows
                    if keyed_by_sqlite and next_key > low:
                        if pending is not None:
                            pending.result()
                            pending = None
                        _check_keys(cursor, spec, partition, next_key)
                    written[partition] = next_key - low
                if pending is not None:
                    pending.result()
                cursor.execute("COMMIT")
            except BaseException:
                if pending is not None:
                    wait([pending])
                cursor.execute("ROLLBACK")
                raise
            finally:
                writer.shutdown(wait=True)
                cursor.close()
        return written

    def _replace_postgres(self, spec: TableSpec, batches: Mapping[str, pa.Table]) -> dict[str, int]:
        import pyarrow.csv as pacsv

        names = ", ".join(f'"{c}"' for c in [spec.partition_column, *spec.column_names])
        written: dict[str, int] = {}
        with self.connect() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (spec.name,))  # one writer per table
            for statement in self._create_sql(spec):
                conn.execute(statement)
            self._check_schema(conn, spec)
            array_type = spec.partition_postgres_type.lower()
            conn.execute(f'DELETE FROM "{spec.name}" WHERE "{spec.partition_column}" = ANY(%s::{array_type}[])',
                         (list(batches),))
            with conn.cursor().copy(f'COPY "{spec.name}" ({names}) FROM STDIN WITH (FORMAT csv)') as copy:
                for partition, rows in batches.items():
                    written[partition] = 0
                    for table in _tables(spec, partition, rows):
                        out = table.select(spec.column_names)
                        out = out.add_column(0, spec.partition_column,
                                             pa.array([partition] * out.num_rows, pa.string()))
                        buffer = io.BytesIO()
                        pacsv.write_csv(out, buffer, pacsv.WriteOptions(include_header=False))
                        copy.write(buffer.getvalue())
                        written[partition] += table.num_rows
        return written

    def partition_row_counts(self, spec: TableSpec, partitions: Sequence[str]) -> dict[str, int]:
        """Rows stored per partition (0 for partitions with no rows or no table)."""
        if not self.table_columns(spec.name):
            return dict.fromkeys(partitions, 0)
        counts = {}
        for partition in partitions:
            where, params = self.partition_filter(spec, partition)
            counts[partition] = self.query(f'SELECT count(*) FROM "{spec.name}" WHERE {where}', params)[0][0]
        return counts


def _tables(spec: TableSpec, partition: str, rows: PartitionRows) -> Iterator[pa.Table]:
    for table in [rows] if isinstance(rows, pa.Table) else rows:
        missing = [c for c in spec.column_names if c not in table.column_names]
        if missing:
            raise WarehouseError(f"{spec.name} partition {partition}: rows lack column(s) {', '.join(missing)}")
        yield table


def _sqlite_rows(conn: Any, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    """Execute on an ADBC SQLite connection; the rows, if the statement returns any."""
    cursor = conn.cursor()
    try:
        cursor.execute(sql, tuple(params) if params else None)
        return list(cursor.fetchall()) if cursor.description else []
    finally:
        cursor.close()


def _nothing_above(cursor: Any, spec: TableSpec, low: int) -> bool:
    """True when no row has a `row_key` from `low` on (no later partition is stored: the usual daily load)."""
    cursor.execute(f'SELECT max(row_key) FROM "{spec.name}"')
    top = cursor.fetchone()[0]
    return top is None or top < low


def _ingest(cursor: Any, table_name: str, batches: list[pa.Table]) -> None:
    for batch in batches:
        cursor.adbc_ingest(table_name, batch, mode="append")


def _check_keys(cursor: Any, spec: TableSpec, partition: str, end: int) -> None:
    """After SQLite numbered a partition's rows, the table's largest key is the partition's last one."""
    cursor.execute(f'SELECT max(row_key) FROM "{spec.name}"')
    if cursor.fetchone()[0] != end - 1:
        raise WarehouseError(f"{spec.name} partition {partition}: SQLite did not number the rows as expected; "
                             "nothing was written (report this as a bug)")


def _sqlite_batches(spec: TableSpec, day: str, first_key: int, table: pa.Table, keyed_by_sqlite: bool
                    ) -> list[pa.Table]:
    """The rows as SQLite stores them: row_key, partition, the columns; timestamps as ISO-8601 UTC text.

    When no later partition is stored (`keyed_by_sqlite`), SQLite numbers the rows itself: a row inserted
    without a `row_key` gets the largest one + 1 (SQLite's documented ROWID rule), so after the partition's
    first row, inserted with its key, the rest get consecutive keys without binding one per row (about a
    quarter of the insert's cost)."""
    columns = {spec.partition_column: pa.repeat(pa.scalar(day, pa.string()), table.num_rows)}
    for name in spec.column_names:
        column = table[name]
        if pa.types.is_timestamp(column.type):
            column = _iso_text(column)
        elif pa.types.is_date(column.type):  # ISO-8601 text, as SQLite's date functions read it
            column = pc.cast(column, pa.string())
        elif pa.types.is_boolean(column.type):
            column = pc.cast(column, pa.int64())
        columns[name] = column
    rows = pa.table(columns)
    if not keyed_by_sqlite:
        return [rows.add_column(0, "row_key", pa.array(np.arange(first_key, first_key + rows.num_rows)))]
    if first_key != partition_bounds(day)[0]:
        return [rows]
    first = rows.slice(0, 1).add_column(0, "row_key", pa.array([first_key], pa.int64()))
    return [first, rows.slice(1)] if rows.num_rows > 1 else [first]
