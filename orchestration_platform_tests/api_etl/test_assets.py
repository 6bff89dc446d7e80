"""The API ETL through Dagster, against the demo sources server and a fresh PostgreSQL database:
one materialization and one set of blocking checks per endpoint, partial failure, idempotency,
rejects, and the published table kept when a check blocks the publish."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml

from orchestration_platform_tests.api_etl.conftest import CUSTOMERS, ORDERS, PRODUCTS, make_config, synthetic


def checks_by_name(result: dg.ExecuteInProcessResult, endpoint: str) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()
            if e.asset_key == dg.AssetKey(["api", endpoint])}


def materialized(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()}


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    [failure] = result.get_step_failure_events()
    return failure.step_failure_data.error.message


def test_every_pagination_style_is_published_with_checks_and_metadata(materialize, query):
    result = materialize(make_config(CUSTOMERS, ORDERS, PRODUCTS))
    assert result.success
    metadata = materialized(result)
    assert set(metadata) == {"customers", "orders", "products"}
    assert metadata["orders"]["rows_loaded"].value == 990 and metadata["orders"]["rejects"].value == 10
    assert metadata["orders"]["pages"].value == 10 and metadata["products"]["pages"].value == 5
    assert metadata["customers"]["dagster/row_count"].value == 300
    for endpoint in metadata:
        checks = checks_by_name(result, endpoint)
        assert len(checks) == 5 and all(c.passed for c in checks.values())
    assert query("SELECT count(*) FROM api.customers") == [(300,)]
    assert query("SELECT count(*), count(DISTINCT sku) FROM api.products") == [(120, 120)]
    assert query("SELECT attributes->>'colour' FROM api.products WHERE sku = 'SKU-00002'") == [("blue",)]


def test_rejects_keep_the_reason_and_the_raw_record(materialize, query):
    assert materialize(make_config(ORDERS)).success
    rejects = query("SELECT reason, record FROM api_rejects.orders ORDER BY (record->>'order_id')::int")
    assert len(rejects) == 10
    assert rejects[0] == ("column 'amount': 'n/a' is not a number",
                          {"order_id": 97, "customer_id": 80, "amount": "n/a", "currency": "EUR", "status": "shipped",
                           "ordered_at": "2026-01-02T03:29:00Z"})
    assert query("SELECT count(*) FROM api.orders WHERE order_id % 97 = 0") == [(0,)]


def test_endpoints_are_extracted_concurrently_in_one_step(materialize):
    endpoints = [synthetic(f"slow_{i}", records=20, latency_ms=800) for i in range(10)]
    started = time.perf_counter()
    result = materialize(make_config(*endpoints))
    elapsed = time.perf_counter() - started
    assert result.success and len(materialized(result)) == 10
    assert len({e.step_key for e in result.get_step_success_events()}) == 1
    assert elapsed < 4.0, f"10 endpoints of 0.8 s took {elapsed:.1f}s; sequentially they take 8 s"


def test_one_failing_endpoint_neither_fails_nor_rolls_back_the_others(materialize, query, fault_key):
    config = make_config(
        synthetic("healthy", records=30),
        synthetic("missing", fault="404", fault_key=fault_key),
        synthetic("down", fault="503", fault_key=fault_key + "b"),
        synthetic("garbled", fault="bad_json", fault_key=fault_key + "c"),
        max_attempts=2,
    )
    result = materialize(config)
    assert not result.success
    assert set(materialized(result)) == {"healthy"}
    assert query("SELECT count(*) FROM api.healthy") == [(30,)]
    message = failure_message(result)
    assert "3 of 4 endpoint(s) not published (1 published and kept)" in message
    assert "endpoint 'missing': HTTP 404" in message
    assert "endpoint 'down': gave up after 2 attempts: HTTP 503" in message
    assert "endpoint 'garbled': response from" in message and "is not JSON" in message
    assert query("SELECT to_regclass('api.missing'), to_regclass('api.down')") == [(None, None)]
    statuses = dict(query("SELECT endpoint, status FROM api_etl.loads"))
    assert statuses == {"healthy": "published", "missing": "failed", "down": "failed", "garbled": "failed"}


def test_three_loads_give_an_identical_table(materialize, query):
    config = make_config(ORDERS, PRODUCTS)
    snapshots = []
    for _ in range(3):
        assert materialize(config).success
        snapshots.append((query("SELECT * FROM api.orders ORDER BY order_id"),
                          query("SELECT * FROM api.products ORDER BY sku"),
                          query("SELECT count(*) FROM api_rejects.orders")))
    assert snapshots[0] == snapshots[1] == snapshots[2]
    assert len(snapshots[0][0]) == 990
    assert query("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'api_staging'") == [(0,)]


def test_schema_drift_blocks_the_publish_and_keeps_the_old_table(materialize, query):
    assert materialize(make_config(ORDERS)).success
    before = query("SELECT * FROM api.orders ORDER BY order_id")
    drifted = {**ORDERS, "params": {"drift": 1}}
    result = materialize(make_config(drifted))
    assert not result.success and materialized(result) == {}
    check = checks_by_name(result, "orders")["schema_matches_declaration"]
    assert not check.passed
    assert "no longer sends declared column(s) ['amount']" in check.description and "'total'" in check.description
    assert query("SELECT * FROM api.orders ORDER BY order_id") == before
    assert "publish blocked by checks (schema_matches_declaration" in failure_message(result)


def test_duplicate_primary_keys_block_the_publish(materialize, query):
    assert materialize(make_config(synthetic("dups", records=40))).success
    result = materialize(make_config(synthetic("dups", records=40, dup_every=10)))
    check = checks_by_name(result, "dups")["primary_key_unique_not_null"]
    assert not check.passed and "4 duplicated value(s) (9 x2, 19 x2, 29 x2, 39 x2)" in check.description
    assert check.metadata["duplicate_keys"].value == 4
    assert query("SELECT count(*), count(DISTINCT id) FROM api.dups") == [(40, 40)]


def test_reject_rate_over_the_threshold_blocks_the_publish(materialize, query):
    result = materialize(make_config(synthetic("rough", records=100, bad_every=5)))
    check = checks_by_name(result, "rough")["reject_rate_within_threshold"]
    assert not check.passed and "20 rejects (20.0%) exceed max_reject_rate=5.0%" in check.description
    assert query("SELECT to_regclass('api.rough')") == [(None,)]
    assert query("SELECT count(*), min(reason) FROM api_rejects.rough") == [(20, "column 'amount': 'not-a-number' "
                                                                                 "is not a number")]


def test_row_count_drop_and_empty_loads_are_blocked(materialize, query):
    assert materialize(make_config(synthetic("shrinking", records=100))).success
    result = materialize(make_config(synthetic("shrinking", records=10)))
    check = checks_by_name(result, "shrinking")["row_count_vs_previous_load"]
    assert not check.passed and "10 rows vs 100 in the previous load: a drop of 90%" in check.description
    result = materialize(make_config(synthetic("shrinking", records=0)))
    assert not checks_by_name(result, "shrinking")["not_empty"].passed
    assert query("SELECT count(*) FROM api.shrinking") == [(100,)]


def test_incremental_endpoint_upserts_by_primary_key(materialize, query):
    assert materialize(make_config({**CUSTOMERS, "params": {"version": 1},
                                    "incremental": {"field": "updated_at"}})).success
    untouched = query("SELECT * FROM api.customers WHERE id % 10 <> 0 ORDER BY id")
    result = materialize(make_config({**CUSTOMERS, "params": {"version": 2}, "incremental": {"field": "updated_at"}}))
    assert result.success
    metadata = materialized(result)["customers"]
    assert metadata["rows_loaded"].value == 50  # only what changed since the watermark: 30 updated + 20 new
    assert metadata["dagster/row_count"].value == 320
    assert query("SELECT count(*), count(*) FILTER (WHERE tier = 'gold-v2') FROM api.customers") == [(320, 32)]
    assert query("SELECT * FROM api.customers WHERE id % 10 <> 0 AND id <= 300 ORDER BY id") == untouched


def test_a_full_refresh_rereads_an_incremental_endpoint_from_the_start(materialize, query):
    from orchestration_platform.components.api_endpoint_assets import ApiEndpointsRunConfig

    incremental = {**CUSTOMERS, "incremental": {"field": "updated_at"}}
    assert materialize(make_config({**incremental, "params": {"version": 1}})).success
    full = dg.RunConfig(ops={"api_endpoints": ApiEndpointsRunConfig(full_refresh=True)})
    result = materialize(make_config({**incremental, "params": {"version": 2}}), run_config=full)
    assert result.success
    metadata = materialized(result)["customers"]
    assert metadata["rows_loaded"].value == 320  # every record, not only the 50 changed since the watermark
    assert query("SELECT count(*), count(*) FILTER (WHERE tier = 'gold-v2') FROM api.customers") == [(320, 32)]


def test_subset_materializes_only_the_selected_endpoints(materialize, query):
    result = materialize(make_config(ORDERS, PRODUCTS), only=["products"])
    assert result.success and set(materialized(result)) == {"products"}
    assert query("SELECT to_regclass('api.orders')") == [(None,)]


def test_adding_an_endpoint_to_the_yaml_adds_its_asset_on_reload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from orchestration_platform.definitions import defs

    config_file = tmp_path / "endpoints.yaml"
    config_file.write_text(yaml.safe_dump({"endpoints": [ORDERS]}))
    monkeypatch.setenv("API_ENDPOINTS_CONFIG", str(config_file))

    def api_assets() -> dict[dg.AssetKey, dg.AssetSpec]:
        specs = {s.key: s for s in defs().resolve_all_asset_specs()}
        return {k: s for k, s in specs.items() if k.path[0] == "api"}

    assert set(api_assets()) == {dg.AssetKey(["api", "orders"])}
    config_file.write_text(yaml.safe_dump({"endpoints": [ORDERS, PRODUCTS]}))
    specs = api_assets()
    assert set(specs) == {dg.AssetKey(["api", "orders"]), dg.AssetKey(["api", "products"])}
    products = specs[dg.AssetKey(["api", "products"])]
    assert products.group_name == "api_etl" and {"postgres", "api"} <= set(products.kinds)
    assert products.freshness_policy is not None and "api.products" in (products.description or "")


def test_a_hostile_config_stops_the_code_location_load_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from orchestration_platform.definitions import defs

    config_file = tmp_path / "endpoints.yaml"
    config_file.write_text(yaml.safe_dump({"endpoints": [{**ORDERS, "name": "users; drop table x"}]}))
    monkeypatch.setenv("API_ENDPOINTS_CONFIG", str(config_file))
    with pytest.raises(Exception) as error:
        defs()
    text = "".join(str(e) for e in (error.value, error.value.__cause__, error.value.__context__) if e)
    assert "endpoint 'users; drop table x', field 'name'" in text and "fix: use 1-40 lowercase letters" in text


def test_the_packaged_default_config_runs_from_the_code_location(use_fresh_database, query, monkeypatch):
    from orchestration_platform.definitions import defs

    monkeypatch.delenv("API_ENDPOINTS_CONFIG", raising=False)
    result = defs().resolve_job_def("api_etl_job").execute_in_process(raise_on_error=False)
    assert result.success
    assert query("SELECT (SELECT count(*) FROM api.customers), (SELECT count(*) FROM api.orders), "
                 "(SELECT count(*) FROM api.products), (SELECT count(*) FROM api_rejects.orders)") == [(300, 990, 120, 10)]


def test_two_loads_of_one_endpoint_at_once_take_turns(run_pipeline, query):
    from concurrent.futures import ThreadPoolExecutor

    config = make_config(synthetic("shared", records=2000, latency_ms=100))
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: run_pipeline(config)["shared"], range(2)))
    assert all(run.published for run in runs), [run.problem for run in runs]
    assert query("SELECT count(*), count(DISTINCT id) FROM api.shared") == [(2000, 2000)]
    assert query("SELECT count(*) FROM api_etl.loads WHERE endpoint = 'shared' AND status = 'published'") == [(2,)]


def test_a_consumer_view_on_a_published_table_keeps_working_across_loads(materialize, query, use_fresh_database):
    assert materialize(make_config(synthetic("watched", records=20))).success
    with psycopg.connect(use_fresh_database) as conn:
        conn.execute("CREATE VIEW public.watched_report AS SELECT count(*) AS n FROM api.watched")
    assert materialize(make_config(synthetic("watched", records=30))).success
    assert query("SELECT n FROM public.watched_report") == [(30,)]
    assert query("SELECT count(*) FROM api.watched") == [(30,)]


def test_a_database_error_in_one_endpoint_keeps_its_table_and_publishes_the_others(materialize, query,
                                                                                   use_fresh_database):
    config = make_config(synthetic("locked", records=20), synthetic("other", records=20))
    assert materialize(config).success
    with psycopg.connect(use_fresh_database) as conn:  # a stray table takes the name of staging's key index
        conn.execute("CREATE TABLE api_staging.locked_pkey (x int)")
    result = materialize(make_config(synthetic("locked", records=30), synthetic("other", records=30)))
    assert not result.success and set(materialized(result)) == {"other"}
    assert 'endpoint \'locked\': DuplicateTable: relation "locked_pkey" already exists' in failure_message(result)
    assert query("SELECT count(*) FROM api.locked") == [(20,)]
    assert query("SELECT count(*) FROM api.other") == [(30,)]
