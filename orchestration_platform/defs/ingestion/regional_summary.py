"""The demo dataset's downstream table: per day and region, reports, confirmed cases and deaths.

Built on `["ingestion", "daily_cases", "cleaned"]` (declared in `datasets/defs.yaml`); it shares that
dataset's daily partitions (INGESTION_START_DATE on), so the `daily_cases_ingestion` job runs it too.
"""

import os

import dagster as dg

from orchestration_platform.defs.ingestion.dataset_assets import GROUP, cleaned_key, warehouse_kind
from orchestration_platform.defs.ingestion.warehouse import WarehouseResource
from orchestration_platform.defs.shared.retries import STEP_RETRY

SUMMARY_KEY = dg.AssetKey(["ingestion", "daily_cases", "regional_summary"])
# the same partitions as the demo dataset's YAML: `start: "{{ env('INGESTION_START_DATE', '2026-01-01') }}"`
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=os.environ.get("INGESTION_START_DATE", "").strip() or "2026-01-01")


@dg.asset(
    key=SUMMARY_KEY,
    group_name=GROUP,
    kinds={warehouse_kind()},
    deps=[cleaned_key("daily_cases")],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    retry_policy=STEP_RETRY,
    pool="ingestion_warehouse",
    owners=["team:ingestion"],
)
def daily_regional_summary(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Per day and region: number of reports, confirmed cases and deaths (table `daily_regional_summary`).

    Built from the cleaned daily cases only after their blocking checks pass, so a day with conflicting
    report ids or unparsed dates never reaches the summary. Replaces its partitions idempotently.
    """
    from orchestration_platform.lib.ingestion.daily_cases import SUMMARY_TABLE, regional_summary

    store = warehouse.get_warehouse()
    batches = regional_summary(store, context.partition_keys)
    written = store.replace_partitions(SUMMARY_TABLE, batches)
    confirmed = sum(sum(t["confirmed_cases"].to_pylist()) for t in batches.values())
    return dg.MaterializeResult(metadata={
        "regions": dg.MetadataValue.int(max((t.num_rows for t in batches.values()), default=0)),
        "confirmed_cases": dg.MetadataValue.int(confirmed),
        "dagster/row_count": dg.MetadataValue.int(sum(written.values())),
        "table": SUMMARY_TABLE.name,
    })
