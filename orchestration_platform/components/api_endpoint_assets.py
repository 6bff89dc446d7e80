"""The assets the `ApiEndpoints` component builds: one per endpoint (`["api", <name>]`), all materialized
by one step, and one per derived table, started by its trigger rule.

Adding an endpoint to the YAML and reloading adds its asset, its checks and its table with no code change.
Selected endpoints are extracted concurrently inside one step (not one process each); each
reports its own materialization and blocking check results, and the step fails at the end,
naming every endpoint that was not published and why, without undoing the others.
"""

# No `from __future__ import annotations`: Dagster inspects the `context` annotation at runtime.

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from orchestration_platform.defs.api_etl.sources import ApiSourcesResource
from orchestration_platform.defs.shared.postgres import PostgresResource
from orchestration_platform.defs.shared.retries import STEP_RETRY
from orchestration_platform.defs.shared.run_limits import max_runtime_tags
from orchestration_platform.defs.shared.trigger_rules import all_success, one_success
from orchestration_platform.lib.api_etl.checks import (
    CHECK_KEY,
    CHECK_NAMES,
    CHECK_NOT_EMPTY,
    CHECK_REJECTS,
    CHECK_ROW_COUNT,
    CHECK_SCHEMA,
    CheckOutcome,
)
from orchestration_platform.lib.api_etl.derived_tables import DerivedTableConfig
from orchestration_platform.lib.api_etl.endpoint_config import COLUMN_TYPES, EndpointConfig, EndpointsConfig

if TYPE_CHECKING:
    from orchestration_platform.lib.api_etl.pipeline import EndpointRun

GROUP = "api_etl"

CHECK_DESCRIPTIONS = {
    CHECK_SCHEMA: "The source still sends every declared column, and the staged table has the declared types.",
    CHECK_KEY: "The primary key is unique and never null in the staged rows.",
    CHECK_ROW_COUNT: "The row count did not drop by more than max_row_drop against the previous published load.",
    CHECK_REJECTS: "The share of records rejected by the transform is at most max_reject_rate.",
    CHECK_NOT_EMPTY: "At least min_rows rows were staged.",
}


def endpoint_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["api", name])


def _spec(endpoint: EndpointConfig, owners: list[str]) -> dg.AssetSpec:
    auth = f" Auth: header `{endpoint.auth.header}` from env var `{endpoint.auth.env}`." if endpoint.auth else ""
    incremental = (f" Incremental on `{endpoint.incremental.field}` (upsert by primary key)."
                   if endpoint.incremental else " Full reload each run.")
    description = (
        f"{endpoint.description or f'Records of the {endpoint.name} API.'}\n\n"
        f"Extracted from `{endpoint.url}` ({endpoint.pagination.type} pagination), fitted to the declared "
        f"columns and published to PostgreSQL table `api.{endpoint.name}` by write-audit-publish; records "
        f"that do not fit go to `api_rejects.{endpoint.name}`.{incremental}{auth}"
    )
    return dg.AssetSpec(
        key=endpoint_key(endpoint.name),
        description=description,
        group_name=GROUP,
        owners=owners,
        kinds={"postgres", "api"},
        skippable=True,  # an endpoint that fails or is blocked is not materialized; the others are
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=endpoint.freshness_hours)),
        metadata={
            "table": f"api.{endpoint.name}",
            "source_url": endpoint.url,
            "primary_key": ", ".join(endpoint.primary_key),
            "dagster/table_name": f"api.{endpoint.name}",
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(name, COLUMN_TYPES[kind]) for name, kind in endpoint.columns.items()]),
        },
    )


def _check_specs(endpoint: EndpointConfig) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(name, asset=endpoint_key(endpoint.name), blocking=True, description=CHECK_DESCRIPTIONS[name])
        for name in CHECK_NAMES
    ]


def _check_result(key: dg.AssetKey, check: CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=key, check_name=check.name, passed=check.passed, description=check.description,
        severity=dg.AssetCheckSeverity.ERROR, metadata=check.metadata,
    )


def _materialization_metadata(run: "EndpointRun") -> dict[str, object]:
    assert run.load is not None and run.extract is not None
    load = run.load
    total = load.rows_staged + load.rejects
    return {
        "dagster/row_count": load.rows_in_table if load.rows_in_table is not None else load.rows_staged,
        "rows_loaded": load.rows_staged,
        "rejects": load.rejects,
        "reject_rate": round(load.rejects / total, 6) if total else 0.0,
        "pages": run.extract.pages,
        "http_requests": run.extract.requests,
        "retries": run.extract.retries,
        "extract_seconds": round(run.extract.seconds, 3),
        "load_seconds": round(sum(load.seconds.values()), 3),
        "load_id": load.load_id,
    }


class ApiEndpointsRunConfig(dg.Config):
    """Run config of the `api_endpoints` step (Launchpad, or `dg.RunConfig(ops={"api_endpoints": ...})`)."""

    full_refresh: bool = Field(default=False, description="re-read incremental endpoints from the start "
                               "(no `updated_since`); every record is upserted by primary key")


def build_api_etl_assets(config: EndpointsConfig, owners: list[str] | None = None) -> dg.AssetsDefinition:
    """The multi-asset for every endpoint in `config`; any subset can be materialized."""
    by_key = {endpoint_key(e.name): e for e in config.endpoints}
    endpoints_config = config  # `config` inside the asset is its run config

    @dg.multi_asset(
        name="api_endpoints",
        specs=[_spec(e, owners or []) for e in config.endpoints],
        check_specs=[spec for e in config.endpoints for spec in _check_specs(e)],
        can_subset=True,
        pool="api_etl",
        retry_policy=STEP_RETRY,
    )
    def api_endpoints(context: dg.AssetExecutionContext, config: ApiEndpointsRunConfig, postgres: PostgresResource,
                      api_sources: ApiSourcesResource):
        """Extract the selected endpoints concurrently, then write-audit-publish each into PostgreSQL."""
        selected = [by_key[key] for key in by_key if key in context.selected_asset_keys]
        selected_checks = context.selected_asset_check_keys
        context.log.info(f"extracting {len(selected)} endpoint(s) concurrently: {[e.name for e in selected]}")
        # Imported here: httpx and psycopg would otherwise slow every load of the code location.
        from orchestration_platform.lib.api_etl.pipeline import run_endpoints

        runs = run_endpoints(
            endpoints_config, selected,
            base_url=api_sources.base_url,
            connect=lambda: postgres.connect(autocommit=True),
            load_id=context.run_id or uuid.uuid4().hex,
            progress=context.log.info,
            full_refresh=config.full_refresh,
        )
        for run in runs:
            key = endpoint_key(run.endpoint)
            checks = [_check_result(key, c) for c in (run.load.checks if run.load else [])
                      if dg.AssetCheckKey(key, c.name) in selected_checks]
            if run.published:
                yield dg.MaterializeResult(asset_key=key, metadata=_materialization_metadata(run), check_results=checks)
            else:
                # The check results attach to the version still published, which is what consumers see.
                yield from checks
        problems = [run.problem for run in runs if run.problem]
        if problems:
            published = sum(run.published for run in runs)
            raise dg.Failure(
                description=(f"{len(problems)} of {len(runs)} endpoint(s) not published "
                             f"({published} published and kept):\n" + "\n".join(f"- {p}" for p in problems)),
                metadata={"failed_endpoints": ", ".join(r.endpoint for r in runs if r.problem),
                          "published_endpoints": published},
                allow_retries=False,
            )

    return api_endpoints


def build_derived_table_asset(table: DerivedTableConfig, owners: list[str] | None = None) -> dg.AssetsDefinition:
    """`api.<name>` rebuilt by its SQL when its trigger rule says so (see defs/shared/trigger_rules.py)."""
    upstreams = [endpoint_key(name) for name in table.upstreams]
    rule = ("runs once EVERY upstream has published since its last build (Airflow ALL_SUCCESS)"
            if table.trigger == "all_success" else
            "runs as soon as ANY upstream has published since its last build (Airflow ONE_SUCCESS)")
    description = (f"{table.description or f'Table api.{table.name}, built by SQL.'}\n\n"
                   f"Rebuilt from {', '.join(f'`api.{n}`' for n in table.upstreams)} in one transaction; "
                   f"{rule}.\n\n```sql\n{table.sql}\n```")

    @dg.asset(
        key=endpoint_key(table.name),
        deps=upstreams,
        description=description,
        group_name=GROUP,
        owners=owners,
        kinds={"postgres", "sql"},
        automation_condition=all_success(upstreams) if table.trigger == "all_success" else one_success(),
        pool="api_etl",
        retry_policy=STEP_RETRY,
        metadata={"table": f"api.{table.name}", "dagster/table_name": f"api.{table.name}",
                  "trigger_rule": table.trigger},
    )
    def derived_table(context: dg.AssetExecutionContext, postgres: PostgresResource) -> dg.MaterializeResult:
        from orchestration_platform.lib.api_etl.derived_tables import build_derived_table

        rows = build_derived_table(lambda: postgres.connect(), table)
        context.log.info(f"api.{table.name}: {rows} rows")
        return dg.MaterializeResult(metadata={"dagster/row_count": rows})

    return derived_table


def build_api_etl_defs(config: EndpointsConfig, tables: list[DerivedTableConfig] | None = None, *,
                       schedule: str | None = "0 * * * *", owners: list[str] | None = None) -> dg.Definitions:
    """Every endpoint's asset, the derived tables, the `api_etl_job` and its (stopped) hourly schedule."""
    assets = [build_api_etl_assets(config, owners), *(build_derived_table_asset(t, owners) for t in tables or [])]
    job = dg.define_asset_job("api_etl_job", selection=dg.AssetSelection.keys(*assets[0].keys),
                              description="Every API endpoint, extracted concurrently in one step.",
                              run_tags=max_runtime_tags("api_etl_job"))
    schedules = [dg.ScheduleDefinition(name="api_etl_hourly", job=job, cron_schedule=schedule,
                                       default_status=dg.DefaultScheduleStatus.STOPPED)] if schedule else []
    return dg.Definitions(assets=assets, jobs=[job], schedules=schedules)
