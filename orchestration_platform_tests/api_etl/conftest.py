"""Fixtures for the API ETL tests: endpoint configs built in code, runs through the real pipeline
(demo sources server over HTTP, the session's PostgreSQL) and through Dagster."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import dagster as dg
import httpx
import psycopg
import pytest

from orchestration_platform.components.api_endpoint_assets import build_api_etl_assets
from orchestration_platform.defs.api_etl.sources import ApiSourcesResource
from orchestration_platform.defs.shared.postgres import PostgresResource
from orchestration_platform.lib.api_etl.endpoint_config import EndpointsConfig, parse_endpoints_config
from orchestration_platform.lib.api_etl.pipeline import EndpointRun, run_endpoints

# Quick retries so fault tests stay fast; the behaviour (what is retried, what is not) is the product's.
FAST_DEFAULTS = {"timeout_s": 2, "max_attempts": 4, "backoff_initial_s": 0.05, "backoff_max_s": 0.2}

CUSTOMERS = {
    "name": "customers", "url": "/api/customers", "params": {"limit": 100}, "records_path": "data",
    "pagination": {"type": "cursor", "next_cursor_path": "meta.next_cursor"}, "primary_key": ["id"],
    "columns": {"id": "integer", "name": "text", "email": "text", "region": "text", "tier": "text",
                "created_at": "timestamp", "updated_at": "timestamp"},
}
ORDERS = {
    "name": "orders", "url": "/api/orders", "records_path": "orders",
    "pagination": {"type": "page", "page_size": 100, "total_pages_path": "total_pages"}, "primary_key": ["order_id"],
    "columns": {"order_id": "integer", "customer_id": "integer", "amount": "numeric", "currency": "text",
                "status": "text", "ordered_at": "timestamp"},
}
PRODUCTS = {
    "name": "products", "url": "/api/products", "params": {"per_page": 25}, "records_path": "",
    "pagination": {"type": "link"}, "primary_key": ["sku"],
    "columns": {"sku": "text", "title": "text", "price": "numeric", "in_stock": "boolean", "attributes": "json"},
}


def synthetic(name: str, records: int = 50, **params: Any) -> dict[str, Any]:
    """A synthetic endpoint (`/api/synthetic/<name>`), page-numbered."""
    return {
        "name": name, "url": f"/api/synthetic/{name}", "params": {"records": records, **params},
        "records_path": "data", "pagination": {"type": "page", "page_size": 1000, "total_pages_path": "total_pages"},
        "primary_key": ["id"],
        "columns": {"id": "integer", "name": "text", "amount": "float", "active": "boolean", "created_at": "timestamp"},
    }


def make_config(*endpoints: dict[str, Any], **defaults: Any) -> EndpointsConfig:
    return parse_endpoints_config({"defaults": {**FAST_DEFAULTS, **defaults}, "endpoints": list(endpoints)})


@pytest.fixture(autouse=True)
def reset_faults(sources_url: str) -> None:
    httpx.post(f"{sources_url}/_faults/reset").raise_for_status()


@pytest.fixture
def fault_key() -> str:
    """A fault counter key of this test's own, so `fault_times` counts only its requests."""
    return uuid.uuid4().hex


@pytest.fixture
def run_pipeline(use_fresh_database: str, sources_url: str) -> Callable[..., dict[str, EndpointRun]]:
    """Run the pipeline (no Dagster) for a config against the fresh database; returns runs by endpoint."""

    def run(config: EndpointsConfig, **kwargs: Any) -> dict[str, EndpointRun]:
        runs = run_endpoints(config, config.endpoints, base_url=sources_url,
                             connect=lambda: psycopg.connect(use_fresh_database, autocommit=True),
                             load_id=uuid.uuid4().hex, **kwargs)
        return {r.endpoint: r for r in runs}

    return run


@pytest.fixture
def materialize(use_fresh_database: str, sources_url: str) -> Callable[..., dg.ExecuteInProcessResult]:
    """Materialize a config's assets with Dagster (in process) against the fresh database."""

    def run(config: EndpointsConfig, only: list[str] | None = None, instance: dg.DagsterInstance | None = None,
            run_config: dg.RunConfig | None = None) -> dg.ExecuteInProcessResult:
        assets = build_api_etl_assets(config)
        selection = [dg.AssetKey(["api", n]) for n in only] if only else None
        return dg.materialize([assets], selection=selection, raise_on_error=False, instance=instance, run_config=run_config,
                              resources={"postgres": PostgresResource(url=use_fresh_database),
                                         "api_sources": ApiSourcesResource(base_url=sources_url)})

    return run


@pytest.fixture
def query(use_fresh_database: str) -> Callable[..., list[tuple]]:
    def run(statement: str, params: list[Any] | None = None) -> list[tuple]:
        with psycopg.connect(use_fresh_database) as conn:
            return conn.execute(statement, params).fetchall()

    return run
