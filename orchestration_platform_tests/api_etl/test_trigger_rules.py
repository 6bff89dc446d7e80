"""Trigger rules (Airflow's ONE_SUCCESS / ALL_SUCCESS / ALL_DONE) as automation conditions, evaluated the
way the automation sensor does (`dg.evaluate_automation_conditions` against an instance), and the
derived tables they start, built for real in PostgreSQL."""

from __future__ import annotations

import dagster as dg
import pytest

from orchestration_platform.components.api_endpoint_assets import build_api_etl_defs
from orchestration_platform.defs.api_etl.sources import ApiSourcesResource
from orchestration_platform.defs.shared.postgres import PostgresResource
from orchestration_platform.defs.shared.trigger_rules import all_done, all_success, any_upstream_failed
from orchestration_platform.lib.api_etl.derived_tables import parse_derived_tables
from orchestration_platform_tests.api_etl.conftest import CUSTOMERS, ORDERS, make_config

BOTH = {"name": "both", "upstreams": ["orders", "customers"], "trigger": "all_success",
        "sql": "SELECT c.region, count(*) AS orders, sum(o.amount) AS amount FROM api.orders o "
               "JOIN api.customers c ON c.id = o.customer_id GROUP BY c.region"}
EITHER = {"name": "either", "upstreams": ["customers", "orders"], "trigger": "one_success",
          "sql": "SELECT DISTINCT ON (endpoint) endpoint, status FROM api_etl.loads "
                 "WHERE endpoint IN ('customers', 'orders') ORDER BY endpoint, finished_at DESC"}
ORDERS_KEY, CUSTOMERS_KEY = dg.AssetKey(["api", "orders"]), dg.AssetKey(["api", "customers"])
BOTH_KEY, EITHER_KEY = dg.AssetKey(["api", "both"]), dg.AssetKey(["api", "either"])


def trigger_rule_defs(postgres_url: str = "postgresql://unused@127.0.0.1:9/x",
                      sources_url: str = "http://127.0.0.1:9") -> dg.Definitions:
    config = make_config(ORDERS, CUSTOMERS)
    built = build_api_etl_defs(config, parse_derived_tables([BOTH, EITHER], ["orders", "customers"], "test"))
    return dg.Definitions.merge(built, dg.Definitions(resources={
        "postgres": PostgresResource(url=postgres_url), "api_sources": ApiSourcesResource(base_url=sources_url)}))


class Ticks:
    """Successive evaluations of the automation sensor, each returning which assets it would start."""

    def __init__(self, defs: dg.Definitions | list[dg.AssetsDefinition], instance: dg.DagsterInstance) -> None:
        self.defs, self.instance, self.cursor = defs, instance, None

    def __call__(self) -> set[str]:
        result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance, cursor=self.cursor)
        self.cursor = result.cursor
        return {r.key.path[-1] for r in result.results if r.true_subset.size}


def published(instance: dg.DagsterInstance, *keys: dg.AssetKey) -> None:
    for key in keys:
        instance.report_runless_asset_event(dg.AssetMaterialization(key))


def test_one_success_runs_after_either_upstream_and_all_success_waits_for_both():
    with dg.instance_for_test() as instance:
        tick = Ticks(trigger_rule_defs(), instance)

        def sensor_runs(*names: str) -> None:
            """The runs the sensor started succeed; the next tick starts nothing new."""
            published(instance, *(dg.AssetKey(["api", name]) for name in names))
            assert tick() == set()

        assert tick() == set()  # nothing published yet
        published(instance, ORDERS_KEY)
        assert tick() == {"either"}  # ONE_SUCCESS: orders alone is enough; ALL_SUCCESS waits for customers
        sensor_runs("either")
        published(instance, CUSTOMERS_KEY)
        assert tick() == {"either", "both"}  # both upstreams have now published since `both` last ran
        sensor_runs("either", "both")
        published(instance, ORDERS_KEY)
        assert tick() == {"either"}  # `both` needs a new customers load too
        sensor_runs("either")
        published(instance, CUSTOMERS_KEY)
        assert tick() == {"either", "both"}


def _flaky_and_steady(calls: dict[str, bool]) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    """Two upstreams: `flaky` fails while `calls["fail"]` is true, `steady` always succeeds."""

    @dg.asset
    def flaky() -> None:
        """Fails while told to."""
        if calls["fail"]:
            raise RuntimeError("source down")

    @dg.asset
    def steady() -> None:
        """Always succeeds."""

    return flaky, steady


def test_all_success_holds_back_while_an_upstream_keeps_failing_and_all_done_does_not():
    calls = {"fail": True}
    flaky, steady = _flaky_and_steady(calls)

    @dg.asset(deps=[flaky, steady], automation_condition=all_done([flaky.key, steady.key]))
    def cleanup() -> None:
        """Runs when both upstreams finished, whatever the outcome (Airflow ALL_DONE)."""

    @dg.asset(deps=[flaky, steady], automation_condition=all_success([flaky.key, steady.key]))
    def report() -> None:
        """Needs both upstreams to succeed (Airflow ALL_SUCCESS)."""

    assets = [flaky, steady, cleanup, report]
    with dg.instance_for_test() as instance:
        tick = Ticks(assets, instance)
        assert tick() == set()
        assert not dg.materialize([flaky], instance=instance, raise_on_error=False).success
        assert dg.materialize([steady], instance=instance).success
        assert tick() == {"cleanup"}  # ALL_DONE: both finished; ALL_SUCCESS: flaky failed, report waits
        calls["fail"] = False
        assert dg.materialize([flaky], instance=instance).success
        assert tick() == {"report"}  # flaky succeeded: now both have succeeded since report last ran


@pytest.mark.usefixtures("reset_faults")
def test_the_derived_tables_are_built_from_the_published_tables(use_fresh_database, sources_url, query):
    defs = trigger_rule_defs(use_fresh_database, sources_url)
    assert defs.resolve_job_def("api_etl_job").execute_in_process().success  # orders and customers published
    job = dg.define_asset_job("tables", selection=[BOTH_KEY, EITHER_KEY])
    result = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def("tables").execute_in_process()
    assert result.success
    [(orders, amount)] = query("SELECT count(*), sum(o.amount) FROM api.orders o JOIN api.customers c ON c.id = o.customer_id")
    assert query("SELECT sum(orders), sum(amount) FROM api.both") == [(orders, amount)] and orders > 0
    assert query("SELECT endpoint, status FROM api.either ORDER BY endpoint") == [
        ("customers", "published"), ("orders", "published")]
    rows = {e.asset_key.path[-1]: e.materialization.metadata["dagster/row_count"].value
            for e in result.get_asset_materialization_events()}
    assert rows == {"both": query("SELECT count(*) FROM api.both")[0][0], "either": 2}


def test_none_failed_holds_back_when_an_upstream_failed_after_succeeding():
    calls = {"fail": False}
    flaky, steady = _flaky_and_steady(calls)

    upstreams = [flaky.key, steady.key]

    @dg.asset(deps=[flaky, steady], automation_condition=all_success(upstreams))
    def all_succeeded() -> None:
        """Airflow ALL_SUCCESS."""

    @dg.asset(deps=[flaky, steady], automation_condition=all_success(upstreams) & ~any_upstream_failed())
    def none_failed() -> None:
        """Airflow NONE_FAILED: as ALL_SUCCESS, and no upstream's latest run failed."""

    with dg.instance_for_test() as instance:
        tick = Ticks([flaky, steady, all_succeeded, none_failed], instance)
        assert tick() == set()
        assert dg.materialize([flaky, steady], instance=instance).success
        calls["fail"] = True
        assert not dg.materialize([flaky], instance=instance, raise_on_error=False).success
        assert tick() == {"all_succeeded"}  # both succeeded since it last ran; flaky's latest run then failed
