"""The ingestion assets through `materialize()` against the real demo sources server and SQLite."""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3

import dagster as dg
import pytest

from orchestration_platform.devstack.sources.csv_feed import daily_cases_csv
from orchestration_platform_tests.ingestion.conftest import (
    CLEANED_KEY,
    RAW_KEY,
    SUMMARY_KEY,
    raw_file_path,
    table_rows,
)

DAY = "2026-03-14"


def _materialization(result: dg.ExecuteInProcessResult, key: dg.AssetKey):
    events = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    assert events, f"{key.to_user_string()} was not materialized"
    return events[0].materialization  # a range run records the same metadata for each day


def _check(result: dg.ExecuteInProcessResult, name: str):
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def test_a_day_is_downloaded_kept_cleaned_checked_and_summarised(materialize_days, ingestion_env) -> None:
    result = materialize_days(DAY)
    assert result.success
    expected = daily_cases_csv(dt.date.fromisoformat(DAY))
    raw = raw_file_path(DAY)
    assert raw.read_bytes() == expected  # kept exactly as published
    raw_meta = _materialization(result, RAW_KEY).metadata
    assert raw_meta["sha256"].value == hashlib.sha256(expected).hexdigest()
    assert raw_meta["size_bytes"].value == len(expected)

    meta = _materialization(result, CLEANED_KEY).metadata
    rows = table_rows(ingestion_env["warehouse"], "daily_cases")
    dropped = {k.removeprefix("dropped_"): v.value for k, v in meta.items() if k.startswith("dropped_")}
    assert meta["rows_out"].value == len(rows) > 100
    assert meta["rows_in"].value == len(rows) + sum(dropped.values())
    assert dropped["missing_required"] > 0 and dropped["duplicate"] > 0  # the feed is messy on purpose
    assert {r[1] for r in rows} == {DAY}
    for _, _, report_id, region, reported_at, cases, _, _ in rows:
        assert region == region.strip() and region
        assert dt.datetime.strptime(reported_at, "%Y-%m-%dT%H:%M:%SZ")  # ISO-8601 UTC
        assert isinstance(report_id, int) and isinstance(cases, int)
    assert len({r[2] for r in rows}) == len(rows)

    assert all(e.passed for e in result.get_asset_check_evaluations())
    summary = table_rows(ingestion_env["warehouse"], "daily_regional_summary")
    assert sum(r[4] for r in summary) == sum(r[5] for r in rows)  # confirmed cases add up per region
    assert sum(r[3] for r in summary) == len(rows)
    assert _materialization(result, SUMMARY_KEY) is not None


def test_materializing_a_day_three_times_leaves_an_identical_table(materialize_days, ingestion_env) -> None:
    materialize_days("2026-03-13")  # a neighbour day that must stay untouched
    snapshots = []
    for _ in range(3):
        assert materialize_days(DAY).success
        snapshots.append(table_rows(ingestion_env["warehouse"], "daily_cases"))
    assert snapshots[0] == snapshots[1] == snapshots[2]
    days = {r[1] for r in snapshots[0]}
    assert days == {"2026-03-13", DAY}


def test_a_backfill_range_runs_as_one_run_and_fills_every_day(materialize_days, ingestion_env) -> None:
    result = materialize_days("2026-02-01", "2026-02-10")
    assert result.success
    with sqlite3.connect(ingestion_env["warehouse"]) as conn:
        days = conn.execute("SELECT partition_date, count(*) FROM daily_cases GROUP BY 1").fetchall()
        summary_days = conn.execute("SELECT count(DISTINCT partition_date) FROM daily_regional_summary").fetchone()
    assert [d for d, _ in days] == [f"2026-02-{n:02d}" for n in range(1, 11)]
    assert summary_days == (10,)
    cleaned_days = {e.partition for e in result.get_asset_materialization_events() if e.asset_key == CLEANED_KEY}
    assert len(cleaned_days) == 10
    meta = _materialization(result, CLEANED_KEY).metadata
    assert meta["partitions"].value == 10 and meta["rows_out"].value == sum(n for _, n in days)


def test_a_day_with_conflicting_report_ids_is_blocked_from_the_summary(
    materialize_days, ingestion_env, tmp_path, monkeypatch
) -> None:
    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / f"{DAY}.csv").write_text(
        "report_id,region,reported_at,confirmed_cases,deaths,notes\n"
        "1,north,2026-03-14T10:00:00Z,5,0,\n"
        "1,south,2026-03-14T11:00:00Z,7,0,\"same id, different report\"\n"
        "2,east,03/14/2026 09:00,1,,\n"
    )
    monkeypatch.setenv("INGESTION_CSV_URL_TEMPLATE", f"file://{feed}/{{date}}.csv")
    result = materialize_days(DAY, raise_on_error=False)
    unique = _check(result, "report_id_unique")
    assert not unique.passed and unique.metadata["failing_partitions"].value == DAY
    assert _check(result, "dates_parse").passed
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert SUMMARY_KEY not in materialized and CLEANED_KEY in materialized
    with sqlite3.connect(ingestion_env["warehouse"]) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "daily_regional_summary" not in tables


@pytest.mark.parametrize("fault", ["500", "502", "503", "429", "truncate", "reset", "timeout"])
def test_transient_faults_are_retried_until_the_day_is_ingested(fault, materialize_days, ingestion_env,
                                                                 monkeypatch) -> None:
    key = f"pipeline-{fault}"
    query = f"fault={fault}&fault_times=2&fault_key={key}&retry_after=0&timeout_s=3"
    monkeypatch.setenv("INGESTION_CSV_URL_TEMPLATE", f"{ingestion_env['sources']}/csv/daily_cases/{{date}}.csv?{query}")
    config = {"ops": {"ingestion__daily_cases__raw": {"config": {"backoff_s": 0.05, "timeout_s": 1.0}}}}
    result = materialize_days(DAY, run_config=config)
    assert result.success
    assert _materialization(result, RAW_KEY).metadata["attempts"].value == 3
    assert raw_file_path(DAY).read_bytes() == daily_cases_csv(dt.date.fromisoformat(DAY))


@pytest.mark.parametrize(
    ("fault", "message"),
    [("404", "not found (HTTP 404)"), ("bad_json", "did not return CSV")],
)
def test_permanent_faults_fail_at_once_with_the_reason(fault, message, materialize_days, ingestion_env,
                                                         monkeypatch) -> None:
    monkeypatch.setenv("INGESTION_CSV_URL_TEMPLATE",
                       f"{ingestion_env['sources']}/csv/daily_cases/{{date}}.csv?fault={fault}")
    result = materialize_days(DAY, raise_on_error=False)
    assert not result.success
    failure = result.failure_data_for_node("ingestion__daily_cases__raw")
    assert message in failure.error.message and DAY in failure.error.message
    assert not raw_file_path(DAY).exists()


def test_transient_faults_that_never_stop_fail_after_the_attempts(materialize_days, ingestion_env,
                                                                   monkeypatch) -> None:
    monkeypatch.setenv("INGESTION_CSV_URL_TEMPLATE",
                       f"{ingestion_env['sources']}/csv/daily_cases/{{date}}.csv?fault=503")
    config = {"ops": {"ingestion__daily_cases__raw": {"config": {"backoff_s": 0.01, "attempts": 3,
                                                                "step_retries": 1, "step_retry_wait_s": 0.1}}}}
    result = materialize_days(DAY, run_config=config, raise_on_error=False)
    failure = result.failure_data_for_node("ingestion__daily_cases__raw")
    assert "HTTP 503" in failure.error.message and "gave up after 3 attempts" in failure.error.message
    assert len([e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]) == 1


def test_a_day_the_source_does_not_have_fails_clearly(materialize_days, ingestion_env, monkeypatch) -> None:
    # the demo feed answers 404 for days in the future, as a real feed does before publishing
    monkeypatch.setenv("INGESTION_CSV_URL_TEMPLATE",
                       f"{ingestion_env['sources']}/csv/daily_cases/2099-01-01.csv?day={{date}}")
    failed = materialize_days(DAY, raise_on_error=False)
    message = failed.failure_data_for_node("ingestion__daily_cases__raw").error.message
    assert "not found (HTTP 404)" in message and "2099-01-01" in message


def test_a_raw_file_that_is_not_a_csv_fails_cleaning_with_the_reason(materialize_days, ingestion_env,
                                                                    tmp_path, monkeypatch) -> None:
    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / f"{DAY}.csv").write_bytes(b"report_id;region;reported_at;confirmed_cases\n1;n;x;2\n")
    monkeypatch.setenv("INGESTION_CSV_URL_TEMPLATE", f"file://{feed}/{{date}}.csv")
    result = materialize_days(DAY, raise_on_error=False)
    message = result.failure_data_for_node("ingestion__daily_cases__cleaned").error.message
    assert "semicolon-delimited" in message and f"{DAY}.csv" in message


def test_a_source_down_longer_than_the_attempts_gets_the_whole_step_retried(materialize_days, ingestion_env,
                                                                            monkeypatch) -> None:
    monkeypatch.setenv("INGESTION_CSV_URL_TEMPLATE", f"{ingestion_env['sources']}/csv/daily_cases/{{date}}.csv"
                       "?fault=502&fault_times=3&fault_key=step-retry")
    config = {"ops": {"ingestion__daily_cases__raw": {"config": {
        "attempts": 2, "backoff_s": 0.01, "step_retries": 1, "step_retry_wait_s": 0.1}}}}
    result = materialize_days(DAY, run_config=config)
    assert result.success
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retries) == 1  # two attempts failed, the step ran again and its second attempt got the file
    assert _materialization(result, RAW_KEY).metadata["attempts"].value == 2


def test_a_landed_file_outside_the_zone_is_refused_by_the_run_too(materialize_days, ingestion_env, tmp_path) -> None:
    outside = tmp_path / "elsewhere" / f"{DAY}.csv"
    outside.parent.mkdir()
    outside.write_bytes(daily_cases_csv(dt.date.fromisoformat(DAY)))
    config = {"ops": {"ingestion__daily_cases__raw": {"config": {"landed_file": str(outside)}}}}
    result = materialize_days(DAY, run_config=config, raise_on_error=False)
    message = result.failure_data_for_node("ingestion__daily_cases__raw").error.message
    assert "is outside the landing zone" in message and not raw_file_path(DAY).exists()


def test_a_range_with_missing_days_names_every_missing_day(materialize_days, ingestion_env, tmp_path,
                                                           monkeypatch) -> None:
    feed = tmp_path / "feed"
    feed.mkdir()
    for day in ("2026-03-01", "2026-03-03"):
        (feed / f"{day}.csv").write_bytes(daily_cases_csv(dt.date.fromisoformat(day)))
    monkeypatch.setenv("INGESTION_CSV_URL_TEMPLATE", f"file://{feed}/{{date}}.csv")
    result = materialize_days("2026-03-01", "2026-03-04", raise_on_error=False)
    message = result.failure_data_for_node("ingestion__daily_cases__raw").error.message
    assert "2 of 4 file(s) could not be downloaded" in message
    assert "2026-03-02" in message and "2026-03-04" in message
