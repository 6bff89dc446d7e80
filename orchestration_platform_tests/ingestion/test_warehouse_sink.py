"""Replacing partitions in SQLite and in the real PostgreSQL server: exact, idempotent, atomic."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from orchestration_platform.lib.ingestion.daily_cases import CLEANED_TABLE
from orchestration_platform.lib.ingestion.warehouse import Warehouse, WarehouseError

UTC = dt.UTC


def _batch(ids: list[int], region: str = "north") -> pa.Table:
    return pa.table({
        "report_id": pa.array(ids, pa.int64()),
        "region": pa.array([region] * len(ids)),
        "reported_at": pa.array([dt.datetime(2026, 5, 1, 9, 30, tzinfo=UTC)] * len(ids), pa.timestamp("s", tz="UTC")),
        "confirmed_cases": pa.array([3] * len(ids), pa.int64()),
        "deaths": pa.array([None] * len(ids), pa.int64()),
        "notes": pa.array(['a "quoted", multi\nline note'] * len(ids)),
    })


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse(request, tmp_path) -> Warehouse:
    if request.param == "sqlite":
        return Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}")
    return Warehouse(request.getfixturevalue("fresh_database"))


def _stored(store: Warehouse) -> list[tuple]:
    return [tuple(str(v) if isinstance(v, dt.date | dt.datetime) else v for v in row) for row in store.query(
        "SELECT CAST(partition_date AS TEXT), report_id, region, confirmed_cases, deaths, notes "
        "FROM daily_cases ORDER BY partition_date, report_id")]


def test_replacing_a_partition_touches_only_that_partition(warehouse: Warehouse) -> None:
    warehouse.replace_partitions(CLEANED_TABLE, {"2026-05-01": _batch([1, 2]), "2026-05-02": _batch([3])})
    warehouse.replace_partitions(CLEANED_TABLE, {"2026-05-01": _batch([7], "south")})
    assert [(r[0], r[1], r[2]) for r in _stored(warehouse)] == [
        ("2026-05-01", 7, "south"), ("2026-05-02", 3, "north")]
    assert warehouse.partition_row_counts(CLEANED_TABLE, ["2026-05-01", "2026-05-02", "2026-05-03"]) == {
        "2026-05-01": 1, "2026-05-02": 1, "2026-05-03": 0}
    assert _stored(warehouse)[0][5] == 'a "quoted", multi\nline note'


def test_three_identical_writes_leave_an_identical_table(warehouse: Warehouse) -> None:
    snapshots = []
    for _ in range(3):
        warehouse.replace_partitions(CLEANED_TABLE, {"2026-05-01": _batch(list(range(50)))})
        snapshots.append(_stored(warehouse))
    assert snapshots[0] == snapshots[1] == snapshots[2] and len(snapshots[0]) == 50


def test_timestamps_are_stored_as_utc_instants(warehouse: Warehouse) -> None:
    warehouse.replace_partitions(CLEANED_TABLE, {"2026-05-01": _batch([1])})
    (value,) = warehouse.query("SELECT reported_at FROM daily_cases")[0]
    if warehouse.dialect == "sqlite":
        assert value == "2026-05-01T09:30:00Z"
    else:
        assert value == dt.datetime(2026, 5, 1, 9, 30, tzinfo=UTC)


def test_a_failed_write_keeps_the_previous_rows(warehouse: Warehouse) -> None:
    warehouse.replace_partitions(CLEANED_TABLE, {"2026-05-01": _batch([1, 2])})
    # a count beyond BIGINT fails in the driver, after the first partition was already rewritten
    broken = _batch([9]).set_column(3, "confirmed_cases", pa.array([2**64 - 1], pa.uint64()))
    with pytest.raises(Exception):  # noqa: B017 - each driver raises its own overflow error
        warehouse.replace_partitions(CLEANED_TABLE, {"2026-05-02": _batch([5]), "2026-05-01": broken})
    assert [(r[0], r[1]) for r in _stored(warehouse)] == [("2026-05-01", 1), ("2026-05-01", 2)]


def test_bad_urls_and_partitions_fail_clearly_without_the_password(tmp_path) -> None:
    with pytest.raises(WarehouseError, match=r"mysql://app:\*\*\*@db/x'?: scheme 'mysql' is not supported"):
        Warehouse("mysql://app:hunter2@db/x")
    store = Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}")
    with pytest.raises(WarehouseError, match="partition 'May 1' is not a date"):
        store.replace_partitions(CLEANED_TABLE, {"May 1": _batch([1])})


def test_an_unreachable_postgres_names_the_server_but_not_the_password() -> None:
    store = Warehouse("postgresql://app:hunter2@127.0.0.1:1/warehouse")
    with pytest.raises(WarehouseError) as error:
        store.query("SELECT 1")
    assert "hunter2" not in str(error.value) and "app:***@127.0.0.1:1" in str(error.value)


def test_a_drifted_table_schema_is_reported_with_the_fix(tmp_path) -> None:
    store = Warehouse(f"sqlite:///{tmp_path / 'w.sqlite'}")
    with store.connect() as conn:
        conn.execute("CREATE TABLE daily_cases (row_key INTEGER PRIMARY KEY, partition_date TEXT, report_id INT)")
    with pytest.raises(WarehouseError, match="lacks column\\(s\\) region, reported_at"):
        store.replace_partitions(CLEANED_TABLE, {"2026-05-01": _batch([1])})


def test_a_partition_can_arrive_in_several_batches(warehouse: Warehouse) -> None:
    written = warehouse.replace_partitions(CLEANED_TABLE, {"2026-05-01": iter([_batch([1, 2]), _batch([3])])})
    assert written == {"2026-05-01": 3}
    assert [r[1] for r in _stored(warehouse)] == [1, 2, 3]


def test_partitions_loaded_in_any_order_get_the_same_row_keys(tmp_path) -> None:
    """SQLite numbers a partition's rows itself when nothing later is stored (the daily load), and the caller
    numbers them when a later partition exists (a backfill): either way a day's rows are keyed
    day ordinal * 2**32 + row number, so reads by day stay primary-key ranges."""
    days = {"2026-05-01": _batch([1, 2, 3]), "2026-05-02": _batch([4, 5]), "2026-05-03": _batch([6])}
    in_order = Warehouse(f"sqlite:///{tmp_path / 'in_order.sqlite'}")
    for day, rows in days.items():
        in_order.replace_partitions(CLEANED_TABLE, {day: rows})
    shuffled = Warehouse(f"sqlite:///{tmp_path / 'shuffled.sqlite'}")
    for day in ["2026-05-03", "2026-05-01", "2026-05-02", "2026-05-03", "2026-05-01"]:
        shuffled.replace_partitions(CLEANED_TABLE, {day: days[day]})
    query = "SELECT row_key, partition_date, report_id FROM daily_cases ORDER BY row_key"
    assert in_order.query(query) == shuffled.query(query)
    assert [key for key, *_ in shuffled.query(query)] == [
        dt.date.fromisoformat(day).toordinal() * 2**32 + i for day, rows in days.items() for i in range(rows.num_rows)]
