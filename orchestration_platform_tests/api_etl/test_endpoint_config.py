"""Hostile and broken endpoint configs are rejected with the endpoint, field, value and fix."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from orchestration_platform.lib.api_etl.endpoint_config import (
    EndpointConfigError,
    load_endpoints_config,
    parse_endpoints_config,
)
from orchestration_platform.settings import PACKAGE_DIR, REPO_ROOT
from orchestration_platform_tests.api_etl.conftest import CUSTOMERS, ORDERS


def _config_error(*endpoints: dict) -> str:
    with pytest.raises(EndpointConfigError) as error:
        parse_endpoints_config({"endpoints": list(endpoints)})
    return str(error.value)


def _with(base: dict, **changes) -> dict:
    endpoint = copy.deepcopy(base)
    endpoint.update(changes)
    return endpoint


def test_sql_injection_in_the_name_is_rejected_with_a_safe_suggestion():
    message = _config_error(_with(CUSTOMERS, name="users; drop table x"))
    assert "endpoint 'users; drop table x'" in message
    assert "field 'name'" in message
    assert "not a safe SQL identifier" in message
    assert "'users_drop_table_x'" in message  # the fix


@pytest.mark.parametrize("name", ["Users", "1users", "a" * 41, "users-x", "", "loads"])
def test_unsafe_or_reserved_names_are_rejected(name: str):
    assert "field 'name'" in _config_error(_with(CUSTOMERS, name=name))


def test_duplicate_names_are_rejected_naming_both_entries():
    message = _config_error(CUSTOMERS, _with(ORDERS, name="customers"))
    assert "endpoint 'customers'" in message and "#1 and #2" in message and "own name" in message


def test_missing_fields_are_named_with_the_fix():
    endpoint = _with(CUSTOMERS)
    del endpoint["primary_key"]
    del endpoint["url"]
    message = _config_error(endpoint)
    assert "endpoint 'customers', field 'primary_key'" in message
    assert "endpoint 'customers', field 'url'" in message
    assert "fix: add it" in message


def test_unknown_column_type_lists_the_valid_ones():
    message = _config_error(_with(CUSTOMERS, columns={"id": "integer", "name": "varchar(10)"}))
    assert "endpoint 'customers', field 'columns'" in message
    assert "unknown type 'varchar(10)'" in message and "integer, float" in message


def test_hostile_column_name_is_rejected():
    message = _config_error(_with(CUSTOMERS, columns={"id": "integer", 'x" text); drop table y; --': "text"}))
    assert "not a safe SQL identifier" in message


def test_unknown_pagination_type_and_misspelled_fields():
    assert "pagination" in _config_error(_with(CUSTOMERS, pagination={"type": "offset"}))
    message = _config_error(_with(CUSTOMERS, primary_kee=["id"]))
    assert "field 'primary_kee'" in message and "check its spelling" in message


def test_primary_key_must_be_a_declared_column():
    message = _config_error(_with(CUSTOMERS, primary_key=["uuid"]))
    assert "['uuid'] not among the declared columns" in message


def test_auth_takes_an_env_var_name_never_the_secret():
    message = _config_error(_with(CUSTOMERS, auth={"env": "Bearer abc.def"}))
    assert "field 'auth.env'" in message and "environment variable NAME" in message


def test_unknown_endpoint_index_is_used_when_the_name_is_missing():
    endpoint = _with(CUSTOMERS)
    del endpoint["name"]
    assert "endpoint #1, field 'name'" in _config_error(endpoint)


def test_broken_files_are_rejected_clearly(tmp_path: Path):
    with pytest.raises(EndpointConfigError, match="does not exist; fix: point API_ENDPOINTS_CONFIG"):
        load_endpoints_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("endpoints: [\n  {name: x")
    with pytest.raises(EndpointConfigError, match="not valid YAML"):
        load_endpoints_config(bad)
    bad.write_text("- just a list\n")
    with pytest.raises(EndpointConfigError, match="expected a mapping with an `endpoints:` list"):
        load_endpoints_config(bad)


def test_packaged_default_and_documented_example_are_valid():
    raw = yaml.safe_load((PACKAGE_DIR / "defs" / "api_etl" / "endpoints" / "defs.yaml").read_text())["attributes"]
    default = parse_endpoints_config({"defaults": raw["defaults"], "endpoints": raw["endpoints"]})
    assert {"customers", "orders", "products"} <= {e.name for e in default.endpoints}
    example = load_endpoints_config(REPO_ROOT / "docs" / "api_endpoints.example.yaml")
    assert all(e.url.startswith("https://") for e in example.endpoints)
    assert {e.pagination.type for e in example.endpoints} >= {"link", "page"}


def test_relative_urls_resolve_against_the_sources_server():
    endpoint = parse_endpoints_config({"endpoints": [CUSTOMERS]}).endpoints[0]
    assert endpoint.resolved_url("http://127.0.0.1:9/") == "http://127.0.0.1:9/api/customers"


def test_credentials_in_the_url_are_rejected_without_being_echoed():
    message = _config_error(_with(CUSTOMERS, url="https://bob:hunter2@api.example.com/customers"))
    assert "field 'url'" in message and "carries credentials" in message and "use auth" in message
    assert "hunter2" not in message and "bob" not in message
