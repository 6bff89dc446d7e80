"""A corpus of messy CSV shapes, each declared as a dataset in one `defs.yaml`, loaded the way `dg` loads
it and ingested through the component's own assets (raw file -> cleaned SQLite table, with checks).

Each case asserts what a user relies on: row counts, values, standardised dates (ISO-8601 UTC) and drop
reasons. The files are made here, in the shapes public daily files take.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import dagster as dg
import pytest

from orchestration_platform_tests.ingestion.component_loading import datasets_defs
from orchestration_platform_tests.ingestion.conftest import RESOURCES

JH_COLUMNS = [
    {"name": "province_state", "type": "text", "required": False, "aliases": ["Province/State"]},
    {"name": "country_region", "type": "text", "aliases": ["Country/Region"]},
    {"name": "last_update", "type": "timestamp", "aliases": ["Last Update"]},
    {"name": "confirmed", "type": "integer"},
]


def _dataset(name: str, columns: list[dict], **extra) -> dict:
    return {"name": name, "source": {"url_template": f"file://FEED/{name}/{{date}}.csv",
                                     "landing_pattern": f"{name}_{{date}}.csv"},
            "partitions": {"start": "2026-01-01"}, "columns": columns, **extra}


DATASETS = [
    _dataset("renamed", JH_COLUMNS, key=["country_region", "province_state"]),
    _dataset("two_digit_years", [{"name": "id", "type": "integer"},
                                 {"name": "seen_at", "type": "timestamp", "year_pivot": 70}]),
    _dataset("mixed_formats", [{"name": "id", "type": "integer"}, {"name": "seen_at", "type": "timestamp"}]),
    _dataset("new_york_times", [{"name": "id", "type": "integer"},
                                {"name": "seen_at", "type": "timestamp", "timezone": "America/New_York"}]),
    _dataset("latin1", [{"name": "city", "type": "text"}, {"name": "people", "type": "integer"}]),
    _dataset("european", [{"name": "region", "type": "text"}, {"name": "rate", "type": "float"},
                          {"name": "amount", "type": "numeric"}]),
    _dataset("thousands", [{"name": "region", "type": "text"}, {"name": "cases", "type": "integer"},
                           {"name": "rate", "type": "float"}]),
    _dataset("trailing_empty", [{"name": "a", "type": "integer"}, {"name": "b", "type": "text"}]),
    _dataset("bom_spaces", [{"name": "region_name", "type": "text"}, {"name": "total_cases", "type": "integer"}]),
    _dataset("header_only", [{"name": "id", "type": "integer"}], allow_header_only=True),
    _dataset("day_first", [{"name": "id", "type": "integer"}, {"name": "on", "type": "date", "day_first": True},
                           {"name": "closed", "type": "date", "required": False, "formats": ["%d-%b-%Y"]}]),
    _dataset("flags", [{"name": "id", "type": "integer"}, {"name": "active", "type": "boolean"},
                       {"name": "note", "type": "text", "required": False, "null_tokens": ["--"]}]),
    _dataset("latest_wins", [{"name": "id", "type": "integer"}, {"name": "value", "type": "integer"},
                             {"name": "updated_at", "type": "timestamp"}],
             key=["id"], duplicates="keep_last", keep_last_by="updated_at"),
    _dataset("preamble", [{"name": "id", "type": "integer"}, {"name": "cases", "type": "integer"}],
             dialect={"header_row": 3, "skip_rows": 1}),
    _dataset("strict_region", [{"name": "region", "type": "text"}, {"name": "cases", "type": "integer"}]),
    _dataset("all_types", [{"name": "id", "type": "integer"}, {"name": "region", "type": "text"},
                           {"name": "rate", "type": "float"}, {"name": "amount", "type": "numeric"},
                           {"name": "active", "type": "boolean"}, {"name": "on", "type": "date"},
                           {"name": "seen_at", "type": "timestamp"}],
             key=["id", "region"], duplicates="keep_last"),
    {**_dataset("hourly", [{"name": "id", "type": "integer"}, {"name": "seen_at", "type": "timestamp"}],
                partitions={"cadence": "hourly", "start": "2026-01-01 00:00"}),
     "source": {"url_template": "file://FEED/hourly/{date:%Y%m%d_%H}.csv", "landing_pattern": "hourly_{date}.csv"}},
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    feed = tmp_path_factory.mktemp("feed")
    declared = [{**d, "source": {**d["source"], "url_template": d["source"]["url_template"].replace("FEED", str(feed))}}
                for d in DATASETS]
    with datasets_defs(declared) as defs:
        yield defs, feed


def _ingest(corpus, ingestion_env, dataset: str, files: dict[str, bytes | str], *, raise_on_error: bool = True):
    defs, feed = corpus
    folder = feed / dataset
    folder.mkdir(exist_ok=True)
    for partition, body in files.items():
        name = partition if dataset != "hourly" else "20260301_05"
        (folder / f"{name}.csv").write_bytes(body.encode() if isinstance(body, str) else body)
    selected = [a for a in defs.assets if a.key.path[1] == dataset] + [
        c for c in defs.asset_checks if any(k.asset_key.path[1] == dataset for k in c.check_keys)]
    keys = sorted(files)
    tags = {} if len(keys) == 1 else {"dagster/asset_partition_range_start": keys[0],
                                      "dagster/asset_partition_range_end": keys[-1]}
    return dg.materialize(selected, partition_key=keys[0] if len(keys) == 1 else None, tags=tags,
                          resources=RESOURCES, raise_on_error=raise_on_error)


def _rows(ingestion_env, table: str, columns: str = "*") -> list[tuple]:
    with sqlite3.connect(ingestion_env["warehouse"]) as conn:
        return conn.execute(f'SELECT {columns} FROM "{table}" ORDER BY row_key').fetchall()


def _cleaned_metadata(result: dg.ExecuteInProcessResult) -> dict:
    (event, *_) = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "cleaned"]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _check(result: dg.ExecuteInProcessResult, name: str):
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def test_renamed_columns_and_added_columns_across_days_land_in_one_table(corpus, ingestion_env) -> None:
    result = _ingest(corpus, ingestion_env, "renamed", {
        "2026-03-01": "Province/State,Country/Region,Last Update,Confirmed\nHubei,China,3/1/26 4:38,10\n"
                      ",Chile,3/1/26 14:05,3\n",
        "2026-03-02": "FIPS,Province_State,Country_Region,Last_Update,Lat,Confirmed\n"
                      "1,Hubei,China,2026-03-02T04:38:00Z,30.9,12\n2,,Chile,2026-03-02 14:05:00,-35.6,4\n",
    })
    assert _rows(ingestion_env, "renamed", "partition_date, province_state, country_region, last_update, confirmed") == [
        ("2026-03-01", "Hubei", "China", "2026-03-01T04:38:00Z", 10),
        ("2026-03-01", None, "Chile", "2026-03-01T14:05:00Z", 3),
        ("2026-03-02", "Hubei", "China", "2026-03-02T04:38:00Z", 12),
        ("2026-03-02", None, "Chile", "2026-03-02T14:05:00Z", 4),
    ]
    meta = _cleaned_metadata(result)
    assert "FIPS (first in 2026-03-02)" in meta["undeclared_columns"] and "Lat" in meta["undeclared_columns"]
    drift = _check(result, "schema_unchanged")
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN  # reported, not blocking
    assert result.success


def test_two_digit_years_and_unpadded_hours(corpus, ingestion_env) -> None:
    _ingest(corpus, ingestion_env, "two_digit_years", {
        "2026-03-01": "id,seen_at\n1,3/1/26 4:38\n2,12/31/99 23:59\n3,1/2/05 0:00\n4,2/30/26 1:00\n5,13/1/26 1:00\n"})
    assert _rows(ingestion_env, "two_digit_years", "id, seen_at") == [
        (1, "2026-03-01T04:38:00Z"), (2, "1999-12-31T23:59:00Z"), (3, "2005-01-02T00:00:00Z")]


def test_date_formats_that_change_from_file_to_file(corpus, ingestion_env) -> None:
    result = _ingest(corpus, ingestion_env, "mixed_formats", {
        "2026-03-01": "id,seen_at\n1,3/1/2026 9:05\n2,03/01/2026 10:00\n",
        "2026-03-02": "id,seen_at\n3,2026-03-02T10:00:00Z\n4,2026-03-02T12:00:00.250+01:00\n",
        "2026-03-03": "id,seen_at\n5,2026-03-03 10:00:00\n6,2026-03-03T10:00\n7,1772532000\n8,soon\n",
    })
    assert [r[0] for r in _rows(ingestion_env, "mixed_formats", "seen_at")] == [
        "2026-03-01T09:05:00Z", "2026-03-01T10:00:00Z", "2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z",
        "2026-03-03T10:00:00Z", "2026-03-03T10:00:00Z", "2026-03-03T10:00:00Z"]
    meta = _cleaned_metadata(result)
    assert meta["dropped_bad_date"] == 1 and meta["rows_in"] == 8 and meta["rows_out"] == 7


def test_naive_times_are_read_in_the_declared_timezone_and_stored_in_utc(corpus, ingestion_env) -> None:
    _ingest(corpus, ingestion_env, "new_york_times", {
        "2026-03-01": "id,seen_at\n1,2026-03-01 10:00:00\n2,2026-03-01T10:00:00Z\n3,2026-07-01 10:00\n"})
    assert [r[0] for r in _rows(ingestion_env, "new_york_times", "seen_at")] == [
        "2026-03-01T15:00:00Z", "2026-03-01T10:00:00Z", "2026-07-01T14:00:00Z"]  # EST, UTC as written, EDT


def test_latin1_files_are_read_without_configuration(corpus, ingestion_env) -> None:
    result = _ingest(corpus, ingestion_env, "latin1", {
        "2026-03-01": "city,people\nZürich,421878\nSão Paulo,12325232\nKöln,1084831\n".encode("latin-1")})
    assert _rows(ingestion_env, "latin1", "city, people") == [
        ("Zürich", 421878), ("São Paulo", 12325232), ("Köln", 1084831)]
    assert _cleaned_metadata(result)["encoding"] == "cp1252"


def test_semicolons_with_decimal_commas(corpus, ingestion_env) -> None:
    _ingest(corpus, ingestion_env, "european", {
        "2026-03-01": "region;rate;amount\nnorth;1,5;1.234,56\nsouth;-0,25;7\neast;zwei;3,5\n"})
    assert _rows(ingestion_env, "european", "region, rate, amount") == [("north", 1.5, "1234.56"),
                                                                         ("south", -0.25, "7")]


def test_thousands_separators(corpus, ingestion_env) -> None:
    result = _ingest(corpus, ingestion_env, "thousands", {
        "2026-03-01": 'region,cases,rate\nnorth,"1,234","1,234.5"\nsouth,"12,345,678",2.5\neast,"1,5",1\n'})
    assert _rows(ingestion_env, "thousands", "region, cases, rate") == [("north", 1234, 1234.5),
                                                                         ("south", 12345678, 2.5)]
    assert _cleaned_metadata(result)["dropped_bad_number"] == 1  # `1,5` is not a grouped number


def test_trailing_empty_columns(corpus, ingestion_env) -> None:
    result = _ingest(corpus, ingestion_env, "trailing_empty", {"2026-03-01": "a,b,,\n1,x,,\n2,y,,\n3,z\n"})
    assert _rows(ingestion_env, "trailing_empty", "a, b") == [(1, "x"), (2, "y")]
    meta = _cleaned_metadata(result)
    assert meta["dropped_malformed_row"] == 1 and meta["undeclared_columns"] == "none"


def test_bom_and_spaces_in_headers(corpus, ingestion_env) -> None:
    _ingest(corpus, ingestion_env, "bom_spaces", {
        "2026-03-01": "\ufeff Region Name , Total_Cases \r\n north , 5 \r\nsouth,7\r\n".encode()})
    assert _rows(ingestion_env, "bom_spaces", "region_name, total_cases") == [("north", 5), ("south", 7)]


def test_a_header_only_file_replaces_the_partition_with_no_rows(corpus, ingestion_env) -> None:
    _ingest(corpus, ingestion_env, "header_only", {"2026-03-01": "id\n1\n2\n"})
    result = _ingest(corpus, ingestion_env, "header_only", {"2026-03-01": "id\n"})
    assert _rows(ingestion_env, "header_only") == []
    assert _cleaned_metadata(result)["rows_in"] == 0 and result.success


def test_day_first_dates_and_declared_formats(corpus, ingestion_env) -> None:
    _ingest(corpus, ingestion_env, "day_first", {
        "2026-03-01": "id,on,closed\n1,31/01/2026,05-Mar-2026\n2,01/02/2026,31-Feb-2026\n3,1.2.26,\n"})
    assert _rows(ingestion_env, "day_first", "id, \"on\", closed") == [
        (1, "2026-01-31", "2026-03-05"), (2, "2026-02-01", None), (3, "2026-02-01", None)]


def test_booleans_and_declared_null_tokens(corpus, ingestion_env) -> None:
    result = _ingest(corpus, ingestion_env, "flags", {
        "2026-03-01": "id,active,note\n1,yes,a\n2,No,--\n3,maybe,c\n4,TRUE,NA\n5,,e\n"})
    assert _rows(ingestion_env, "flags", "id, active, note") == [(1, 1, "a"), (2, 0, None), (4, 1, "NA")]
    meta = _cleaned_metadata(result)
    assert meta["dropped_bad_boolean"] == 1 and meta["dropped_missing_required"] == 1


def test_keep_last_by_a_column(corpus, ingestion_env) -> None:
    result = _ingest(corpus, ingestion_env, "latest_wins", {
        "2026-03-01": "id,value,updated_at\n1,10,2026-03-01T10:00:00Z\n1,11,2026-03-01T12:00:00Z\n"
                      "1,9,2026-03-01T08:00:00Z\n2,20,2026-03-01T09:00:00Z\n"})
    assert _rows(ingestion_env, "latest_wins", "id, value") == [(1, 11), (2, 20)]
    assert _cleaned_metadata(result)["dropped_duplicate"] == 2 and _check(result, "id_unique").passed


def test_title_lines_above_the_header_and_a_units_line_below(corpus, ingestion_env) -> None:
    _ingest(corpus, ingestion_env, "preamble", {
        "2026-03-01": "Daily report\nsource: ministry\nid,cases\n(number),(people)\n1,5\n2,6\n"})
    assert _rows(ingestion_env, "preamble", "id, cases") == [(1, 5), (2, 6)]


def test_a_missing_required_column_fails_the_partition_naming_file_header_column_and_fix(
        corpus, ingestion_env) -> None:
    result = _ingest(corpus, ingestion_env, "strict_region", {"2026-03-01": "Region_Name,cases\nnorth,5\n"},
                     raise_on_error=False)
    assert not result.success
    message = result.failure_data_for_node("ingestion__strict_region__cleaned").error.message
    for part in ("2026-03-01.csv", "Region_Name, cases", "missing required column(s) region",
                 "add `Region_Name` to the `aliases` of `region`"):
        assert part in message


def test_hourly_files_named_with_their_hour(corpus, ingestion_env) -> None:
    _ingest(corpus, ingestion_env, "hourly", {"2026-03-01-05:00": "id,seen_at\n1,2026-03-01 05:10\n"})
    assert _rows(ingestion_env, "hourly", "partition_date, seen_at") == [("2026-03-01-05:00", "2026-03-01T05:10:00Z")]
    _, feed = corpus
    assert Path(feed / "hourly" / "20260301_05.csv").is_file()


def test_every_column_type_lands_in_postgresql_too(corpus, ingestion_env, fresh_database, monkeypatch) -> None:
    import psycopg

    monkeypatch.setenv("INGESTION_WAREHOUSE_URL", fresh_database)
    for _ in range(2):  # idempotent: the second run replaces the partition
        result = _ingest(corpus, ingestion_env, "all_types", {
            "2026-03-01": "id,region,rate,amount,active,on,seen_at\n"
                          '1,north,"1,234.5",10.25,yes,2026-03-01,3/1/26 4:38\n'
                          "1,north,1.5,10.25,yes,2026-03-01,2026-03-01T04:38:00Z\n"  # a later duplicate key
                          "2,south,2.5,-3,no,02/03/2026,2026-03-01T05:00:00+01:00\n"})
        assert result.success and all(e.passed for e in result.get_asset_check_evaluations()
                                      if e.check_name != "schema_unchanged")
    with psycopg.connect(fresh_database) as conn:
        rows = conn.execute("SELECT partition_date::text, id, region, rate, amount::text, active, \"on\"::text, "
                            "seen_at AT TIME ZONE 'UTC' FROM all_types ORDER BY id").fetchall()
    assert [r[:7] for r in rows] == [("2026-03-01", 1, "north", 1.5, "10.25", True, "2026-03-01"),
                                     ("2026-03-01", 2, "south", 2.5, "-3", False, "2026-02-03")]
    assert [r[7].isoformat() for r in rows] == ["2026-03-01T04:38:00", "2026-03-01T04:00:00"]
