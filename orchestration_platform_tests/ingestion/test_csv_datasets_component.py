"""The CSV datasets component loaded from YAML the way `dg` loads it: what each declared dataset becomes,
the second example dataset end to end against the demo sources server, and one bad YAML per kind of
error (the load fails naming the dataset, the field, the value and the fix)."""

from __future__ import annotations

import datetime as dt
import json
import os
import time

import dagster as dg
import pytest

from orchestration_platform.lib.ingestion.dataset import DatasetConfigError
from orchestration_platform_tests.ingestion.component_loading import datasets_defs
from orchestration_platform_tests.ingestion.conftest import INGESTION, RESOURCES, table_rows

COLUMNS = [{"name": "id", "type": "integer"}, {"name": "seen_at", "type": "timestamp"}]


def _minimal(**changes) -> dict:
    dataset = {"name": "cases", "source": {"url_template": "https://example.org/{date:%m-%d-%Y}.csv"},
               "partitions": {"start": "2026-01-01"}, "columns": COLUMNS}
    for field, value in changes.items():
        section, _, sub = field.partition("__")
        if sub:
            dataset[section] = {**dataset.get(section, {}), sub: value}
        else:
            dataset[section] = value
    return dataset


def test_each_declared_dataset_gets_its_assets_checks_job_and_schedule() -> None:
    keys = {a.key.to_user_string(): a for a in INGESTION.assets}
    assert {"ingestion/daily_cases/raw", "ingestion/daily_cases/cleaned", "ingestion/jh_daily/raw",
            "ingestion/jh_daily/cleaned", "ingestion/daily_cases/regional_summary"} <= set(keys)
    cleaned = keys["ingestion/jh_daily/cleaned"]
    key = dg.AssetKey(["ingestion", "jh_daily", "cleaned"])
    assert cleaned.group_names_by_key[key] == "ingestion"
    assert cleaned.specs_by_key[key].kinds == {"csv", "sqlite"}
    assert cleaned.specs_by_key[key].owners == ["team:ingestion"]
    assert cleaned.backfill_policy == dg.BackfillPolicy.single_run()
    assert cleaned.specs_by_key[key].freshness_policy is not None
    assert "Province/State" not in (cleaned.specs_by_key[key].description or "")  # the user's words, not config
    schedules = {s.name: s for s in INGESTION.schedules}
    assert schedules["daily_cases_schedule"].cron_schedule == "30 1 * * *"
    assert schedules["jh_daily_schedule"].cron_schedule == "0 6 * * *"  # publish_delay: 6h
    checks = {k.name for c in INGESTION.asset_checks for k in c.check_keys if k.asset_key == key}
    assert checks == {"required_columns_present", "no_nulls_in_required_columns", "dates_parse",
                      "country_region_province_state_unique", "row_count_not_anomalous"}


def test_the_johns_hopkins_like_example_survives_its_schema_change(ingestion_env, monkeypatch) -> None:
    monkeypatch.setenv("JH_DAILY_URL_TEMPLATE", f"{ingestion_env['sources']}/csv/jh_daily/{{date:%m-%d-%Y}}.csv")
    selected = [a for a in INGESTION.assets if a.key.path[1] == "jh_daily"] + [
        c for c in INGESTION.asset_checks if any(k.asset_key.path[1] == "jh_daily" for k in c.check_keys)]
    result = dg.materialize(selected, resources=RESOURCES, tags={
        "dagster/asset_partition_range_start": "2026-02-28", "dagster/asset_partition_range_end": "2026-03-01"})
    assert result.success
    rows = table_rows(ingestion_env["warehouse"], "jh_daily")
    assert len(rows) == 20 and {r[1] for r in rows} == {"2026-02-28", "2026-03-01"}
    by_day = {(r[1], r[3], r[2]): r for r in rows}
    assert by_day[("2026-02-28", "Canada", "Ontario")][4].startswith("2026-02-28T")  # from `2/28/26 H:MM`
    assert by_day[("2026-03-01", "US", "New York")][4].startswith("2026-03-01T")  # from ISO
    drift = [e for e in result.get_asset_check_evaluations() if e.check_name == "schema_unchanged"]
    assert drift and not drift[0].passed  # FIPS, Lat, Long_, Active appeared on 2026-03-01


def test_a_dropped_file_goes_to_the_dataset_whose_pattern_it_fits(ingestion_env) -> None:
    zone = ingestion_env["zone"]
    for name in ("jh_daily_03-14-2026.csv", "daily_cases_2026-03-14.csv", "jh_daily_14-03-2026.csv"):
        (zone / name).write_text("a,b\n1,2\n")
        os.utime(zone / name, (time.time() - 10, time.time() - 10))
    (sensor,) = INGESTION.sensors
    with dg.instance_for_test() as instance, dg.build_sensor_context(instance=instance, resources=RESOURCES) as ctx:
        result = sensor(ctx)
    jobs = sorted((r.job_name, r.partition_key) for r in result.run_requests)
    assert jobs == [("daily_cases_ingestion", "2026-03-14"), ("jh_daily_ingestion", "2026-03-14")]
    (jh,) = [r for r in result.run_requests if r.job_name == "jh_daily_ingestion"]
    assert jh.run_config["ops"]["ingestion__jh_daily__raw"]["config"]["landed_file"].endswith("03-14-2026.csv")
    rejected = json.loads(result.cursor)["rejected"]
    assert rejected == {"jh_daily_14-03-2026.csv": "names day '14-03-2026', which is not a date"}


def test_a_yaml_error_fails_the_load_naming_dataset_field_value_and_fix() -> None:
    with pytest.raises(Exception) as raised, datasets_defs([_minimal(partitions__cadence="fortnightly")]):
        pass
    error = raised.value
    while error is not None and not isinstance(error, DatasetConfigError):
        error = error.__cause__ or error.__context__
    assert error is not None, f"the load failed for another reason: {raised.value}"
    assert str(error) == ("dataset 'cases': partitions.cadence='fortnightly' is not a cadence: use one of daily, "
                          "hourly, weekly, monthly")


def test_a_valid_yaml_loads_in_a_fresh_project() -> None:
    with datasets_defs([_minimal(), _minimal(name="other", source={
            "url_template": "file:///data/{date:%Y/%m/%d}.csv", "landing_pattern": "other_{date}.csv"})]) as defs:
        assert {a.key.to_user_string() for a in defs.assets} == {
            "ingestion/cases/raw", "ingestion/cases/cleaned", "ingestion/other/raw", "ingestion/other/cleaned"}


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        (_minimal(name="Cases-2026"), "name='Cases-2026' is not a safe SQL identifier"),
        (_minimal(source={"url_template": "https://example.org/latest.csv"}), "has no {date} placeholder"),
        (_minimal(source={"url_template": "https://example.org/{day}.csv"}), "the only placeholder is {date}"),
        (_minimal(source={"url_template": "ftp://example.org/{date}.csv"}), "must start with http://, https://"),
        (_minimal(source={"url_template": "https://x/{date}.csv", "auth_header": "Authorization"}),
         "auth_env naming the environment variable"),
        (_minimal(partitions__start="January"), "partitions.start='January' is not a date"),
        (_minimal(partitions__timezone="Mars/Olympus"), "is not a time zone"),
        (_minimal(partitions__publish_delay="soon"), "publish_delay='soon' is not a delay: write it like 1h30m"),
        (_minimal(partitions__publish_delay="30h"), "is longer than one daily partition"),
        (_minimal(dialect={"delimiter": "#"}), "dialect.delimiter='#' is not a delimiter"),
        (_minimal(dialect={"encoding": "klingon"}), "dialect.encoding='klingon' is not an encoding"),
        (_minimal(dialect={"header_row": 0}), "dialect.header_row=0 must be a whole number"),
        (_minimal(columns=[{"name": "id", "type": "money"}]), "columns[0] (id).type='money' is not a type"),
        (_minimal(columns=[{"name": "id", "type": "integer", "formats": ["%Y"]}]), "only applies to date"),
        (_minimal(columns=[{"name": "row_key"}]), "columns[0] (row_key).name='row_key' is not a column name"),
        (_minimal(key=["region"]), "key='region' is not a declared column"),
        (_minimal(duplicates="newest"), "duplicates='newest' is not a policy"),
        (_minimal(key=["id"], duplicates="keep_last", keep_last_by="when"), "keep_last_by='when' must be"),
        (_minimal(quality={"max_drop_rate": 5}), "quality.max_drop_rate=5 must be a fraction"),
        (_minimal(quality={"row_count_band": [2, 3]}), "row_count_band=[2, 3] must be [low, high]"),
        (_minimal(owners=["bob"]), "owners='bob' is not an owner"),
    ],
)
def test_each_kind_of_yaml_error_names_dataset_field_value_and_fix(dataset: dict, expected: str) -> None:
    from orchestration_platform.components.csv_datasets import CsvDatasets

    with pytest.raises(DatasetConfigError) as error:
        CsvDatasets(datasets=[dataset]).specs()
    message = str(error.value)
    assert expected in message and message.startswith(f"dataset {dataset['name']!r}: ")
    assert any(word in message for word in ("use", "write", "add", "give", "must", "keep", "remove", "declare",
                                            "needs", "move"))


def test_two_datasets_may_not_claim_the_same_landed_files() -> None:
    from orchestration_platform.components.csv_datasets import CsvDatasets

    first = _minimal(source={"url_template": "https://x/{date}.csv", "landing_pattern": "*{date}.csv"})
    second = _minimal(name="again", source={"url_template": "https://y/{date}.csv", "landing_pattern": "a*{date}.csv"})
    with pytest.raises(DatasetConfigError, match="also matches dataset"):
        CsvDatasets(datasets=[second, first]).specs()


def test_the_url_template_takes_any_strftime_form_and_the_env_override_at_run_time(monkeypatch) -> None:
    from orchestration_platform.lib.ingestion.dataset_config import dataset_from_config

    spec = dataset_from_config(_minimal(source={"url_template": "https://x/{date:%Y/%m/%d}/{date:%m-%d-%Y}.csv",
                                                "url_template_env": "CASES_URL"}))
    assert spec.url_for("2026-03-04") == "https://x/2026/03/04/03-04-2026.csv"
    monkeypatch.setenv("CASES_URL", "file:///mirror/{date}.csv")
    assert spec.url_for("2026-03-04") == "file:///mirror/2026-03-04.csv"  # plain {date}: the partition key
    assert dt.date.fromisoformat(spec.partitions.start) == dt.date(2026, 1, 1)


def test_an_auth_header_is_read_from_its_variable_at_run_time_and_never_shown(ingestion_env, monkeypatch) -> None:
    from orchestration_platform.devstack.sources.csv_feed import PRIVATE_TOKEN

    private = _minimal(name="private_cases", source={
        "url_template": f"{ingestion_env['sources']}/csv/private/daily_cases/{{date}}.csv",
        "auth_header": "Authorization", "auth_env": "PRIVATE_CASES_TOKEN"},
        columns=[{"name": "report_id", "type": "integer"}, {"name": "region", "type": "text"}])
    with datasets_defs([private]) as defs:
        raw = [a for a in defs.assets if a.key.path[-1] == "raw"]
        monkeypatch.delenv("PRIVATE_CASES_TOKEN", raising=False)
        failed = dg.materialize(raw, partition_key="2026-03-14", resources=RESOURCES, raise_on_error=False)
        message = failed.failure_data_for_node("ingestion__private_cases__raw").error.message
        assert "source.auth_env='PRIVATE_CASES_TOKEN' is not set" in message
        monkeypatch.setenv("PRIVATE_CASES_TOKEN", PRIVATE_TOKEN)
        result = dg.materialize(raw, partition_key="2026-03-14", resources=RESOURCES)
    assert result.success
    shown = " ".join(str(e) for e in result.all_events)
    assert "demo-feed-token" not in shown
