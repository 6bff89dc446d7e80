"""The endpoints component loaded from a defs.yaml the way `dg` loads it (a defs folder sandbox), and a
bad YAML for each kind of error: every message names the endpoint or table, the field, the value and the fix."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster.components.testing import create_defs_folder_sandbox

from orchestration_platform.components.api_endpoints import ApiEndpoints
from orchestration_platform.defs.api_etl.sources import ApiSourcesResource
from orchestration_platform.defs.shared.postgres import PostgresResource
from orchestration_platform.settings import PACKAGE_DIR

TYPE = "orchestration_platform.components.api_endpoints.ApiEndpoints"
ORDERS = {"name": "orders", "url": "/api/orders", "records_path": "orders", "primary_key": ["order_id"],
          "columns": {"order_id": "integer", "customer_id": "integer", "amount": "numeric"}}
CUSTOMERS = {"name": "customers", "url": "/api/customers", "primary_key": ["id"],
             "columns": {"id": "integer", "region": "text"}}
# What defs/shared and defs/api_etl/resources.py bind in the real project (never connected to here).
RESOURCES = dg.Definitions(resources={"postgres": PostgresResource(url="postgresql://unused@127.0.0.1:9/x"),
                                      "api_sources": ApiSourcesResource(base_url="http://127.0.0.1:9")})
TOTALS = {"name": "totals", "upstreams": ["orders", "customers"], "trigger": "all_success",
          "sql": "SELECT c.region, sum(o.amount) AS amount FROM api.orders o JOIN api.customers c "
                 "ON c.id = o.customer_id GROUP BY c.region"}


@contextmanager
def loaded(attributes: dict[str, Any] | str) -> Iterator[tuple[ApiEndpoints, dg.Definitions]]:
    """Write `defs/api_endpoints/defs.yaml` (a mapping, or raw YAML text) in a sandbox project and load it."""
    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "api_endpoints"
        folder.mkdir()
        text = attributes if isinstance(attributes, str) else yaml.safe_dump({"type": TYPE, "attributes": attributes})
        (folder / "defs.yaml").write_text(text)
        with sandbox.load_component_and_build_defs(defs_path=folder) as (component, defs):
            yield component, dg.Definitions.merge(defs, RESOURCES)


def load_error(attributes: dict[str, Any] | str) -> str:
    with pytest.raises(Exception) as error, loaded(attributes):
        pass
    chain, seen = [], error.value
    while seen is not None:  # dg wraps the component's error; the message we wrote is in the chain
        chain.append(str(seen))
        seen = seen.__cause__ or seen.__context__
    return "\n".join(chain)


def test_each_endpoint_and_table_becomes_an_asset_with_its_checks_job_and_schedule():
    with loaded({"endpoints": [ORDERS, CUSTOMERS], "tables": [TOTALS]}) as (component, defs):
        assert isinstance(component, ApiEndpoints)
        graph = defs.resolve_asset_graph()
        keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
        assert keys == {"api/orders", "api/customers", "api/totals"}
        assert {k.name for k in graph.asset_check_keys if k.asset_key.path == ["api", "orders"]} >= {
            "not_empty", "primary_key_unique_not_null"}
        totals = graph.get(dg.AssetKey(["api", "totals"]))
        assert totals.parent_keys == {dg.AssetKey(["api", "orders"]), dg.AssetKey(["api", "customers"])}
        assert totals.automation_condition is not None and totals.automation_condition.get_label() == "all_success"
        assert [job.name for job in defs.jobs or []] == ["api_etl_job"]
        [schedule] = defs.schedules or []
        assert schedule.name == "api_etl_hourly" and schedule.cron_schedule == "0 * * * *"


def test_the_packaged_defs_yaml_loads_as_a_component():
    text = (PACKAGE_DIR / "defs" / "api_etl" / "endpoints" / "defs.yaml").read_text()
    with loaded(text) as (_, defs):
        keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"api/customers", "api/orders", "api/products", "api/order_totals_by_region", "api/latest_loads"} <= keys


def test_an_endpoints_file_from_the_environment_replaces_the_inline_lists(tmp_path: Path, monkeypatch):
    other = tmp_path / "endpoints.yaml"
    other.write_text(yaml.safe_dump({"defaults": {"concurrency": 4}, "endpoints": [CUSTOMERS]}))
    monkeypatch.setenv("API_ENDPOINTS_CONFIG", str(other))
    text = (f"type: {TYPE}\nattributes:\n  endpoints_file: \"{{{{ env('API_ENDPOINTS_CONFIG', '') }}}}\"\n"
            f"  endpoints: {yaml.safe_dump([ORDERS], default_flow_style=True)}")
    with loaded(text) as (component, defs):
        assert component.endpoints_file == str(other)
        assert {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()} == {"api/customers"}
    monkeypatch.setenv("API_ENDPOINTS_CONFIG", "")
    with loaded(text) as (_, defs):  # unset: the inline list
        assert {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()} == {"api/orders"}


def test_a_relative_endpoints_file_is_read_beside_the_defs_yaml():
    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "api"
        folder.mkdir()
        (folder / "mine.yaml").write_text(yaml.safe_dump({"endpoints": [ORDERS]}))
        (folder / "defs.yaml").write_text(yaml.safe_dump({"type": TYPE, "attributes": {"endpoints_file": "mine.yaml"}}))
        with sandbox.load_component_and_build_defs(defs_path=folder) as (_, defs):
            defs = dg.Definitions.merge(defs, RESOURCES)
            assert [k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()] == ["api/orders"]


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        pytest.param({"endpoints": [{**ORDERS, "name": "users; drop table x"}]},
                     ["endpoint 'users; drop table x', field 'name'", "not a safe SQL identifier", "fix:"],
                     id="unsafe-name"),
        pytest.param({"endpoints": [{k: v for k, v in ORDERS.items() if k != "primary_key"}]},
                     ["endpoint 'orders', field 'primary_key'", "Field required", "fix: add it"], id="missing-field"),
        pytest.param({"endpoints": [{**ORDERS, "columns": {"order_id": "integr"}}]},
                     ["endpoint 'orders', field 'columns'", "unknown type 'integr'", "fix: use one of integer"],
                     id="unknown-column-type"),
        pytest.param({"endpoints": [{**ORDERS, "pagination": {"type": "offset"}}]},
                     ["endpoint 'orders', field 'pagination'", "offset", "fix: use pagination type none, cursor"],
                     id="unknown-pagination"),
        pytest.param({"endpoints": [{**ORDERS, "primary_keys": ["order_id"]}]},
                     ["endpoint 'orders', field 'primary_keys'", "fix: remove it or check its spelling"],
                     id="misspelt-endpoint-field"),
        pytest.param({"endpoints": [ORDERS, ORDERS]},
                     ["endpoint 'orders', field 'name'", "used by endpoints #1 and #2", "fix: give each endpoint"],
                     id="duplicate-name"),
        pytest.param({"endpoints": [{**ORDERS, "auth": {"env": "Bearer abc.def"}}]},
                     ["endpoint 'orders', field 'auth.env'", "fix: e.g. DEMO_API_TOKEN"], id="secret-in-yaml"),
        pytest.param({"endpoints": []}, ["field 'endpoints'", "at least 1 item"], id="no-endpoints"),
        pytest.param({"defaults": {"concurrency": 0}, "endpoints": [ORDERS]},
                     ["field 'defaults.concurrency'", "value 0", "greater than or equal to 1"], id="bad-default"),
        pytest.param({"endpoints": [ORDERS, CUSTOMERS], "tables": [{**TOTALS, "upstreams": ["orders", "clients"]}]},
                     ["table 'totals', field 'upstreams'", "['clients'] not declared", "fix: use endpoints or tables"],
                     id="table-unknown-upstream"),
        pytest.param({"endpoints": [ORDERS, CUSTOMERS], "tables": [{**TOTALS, "sql": "SELECT 1; DROP TABLE api.x"}]},
                     ["table 'totals', field 'sql'", "more than one statement", "fix: write a single SELECT"],
                     id="table-two-statements"),
        pytest.param({"endpoints": [ORDERS, CUSTOMERS], "tables": [{**TOTALS, "trigger": "all_done"}]},
                     ["table 'totals', field 'trigger'", "value 'all_done'", "fix: use one of all_success, one_success"],
                     id="table-unknown-trigger"),
        pytest.param({"endpoints": [ORDERS, CUSTOMERS], "tables": [{**TOTALS, "name": "orders"}]},
                     ["table 'orders', field 'name'", "already an endpoint or table", "fix:"], id="table-name-taken"),
    ],
)
def test_a_bad_yaml_fails_the_load_naming_the_field_the_value_and_the_fix(attributes, expected):
    message = load_error(attributes)
    for part in expected:
        assert part in message, f"{part!r} not in:\n{message}"


def test_a_misspelt_attribute_fails_the_load_naming_it():
    message = load_error({"endpoint": [ORDERS]})
    assert "endpoint" in message and ("extra" in message.lower() or "not permitted" in message.lower())


def test_a_wrongly_typed_attribute_fails_the_load_naming_it():
    message = load_error({"endpoints": "orders"})
    assert "endpoints" in message and "list" in message.lower()


def test_a_yaml_that_is_not_yaml_fails_the_load():
    assert "defs.yaml" in load_error(f"type: {TYPE}\nattributes:\n  endpoints: [\n    {{name: x")


def test_a_missing_or_broken_endpoints_file_fails_the_load_with_the_fix(tmp_path: Path):
    missing = load_error({"endpoints_file": str(tmp_path / "nope.yaml")})
    assert "nope.yaml' does not exist; fix: point API_ENDPOINTS_CONFIG" in missing
    broken = tmp_path / "broken.yaml"
    broken.write_text("endpoints: [\n  {name: x")
    assert "broken.yaml' is not valid YAML" in load_error({"endpoints_file": str(broken)})
    broken.write_text("- just a list\n")
    assert "expected a mapping with an `endpoints:` list" in load_error({"endpoints_file": str(broken)})


def test_templates_inside_endpoints_are_rendered_and_other_strings_kept_as_written(monkeypatch):
    monkeypatch.setenv("ORDERS_API", "https://shop.example.com")
    endpoint = {**ORDERS, "url": "{{ env('ORDERS_API') }}/v1/orders", "params": {"version": "2.0", "page": 1}}
    with loaded({"endpoints": [endpoint]}) as (component, _):
        config, _ = component.load_config("defs.yaml")
    [orders] = config.endpoints
    assert orders.url == "https://shop.example.com/v1/orders"
    assert orders.params == {"version": "2.0", "page": 1}  # "2.0" stays the string the API expects
