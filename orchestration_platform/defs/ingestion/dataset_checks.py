"""Checks on a dataset's cleaned table, evaluated on the stored rows of the partitions just written.

The blocking ones (columns, nulls, dates, key) stop anything downstream from being built from a
bad partition in the same run. The row-count check only warns: a quiet day is news, not an error.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from orchestration_platform.defs.ingestion.dataset_assets import cleaned_key
from orchestration_platform.defs.ingestion.warehouse import WarehouseResource
from orchestration_platform.defs.shared.run_limits import max_runtime_tags
from orchestration_platform.lib.ingestion.dataset import DatasetSpec


def check_names(spec: DatasetSpec) -> dict[str, tuple[str, bool]]:
    schema = spec.schema
    low, high = spec.quality.row_count_band
    checks = {
        "required_columns_present": ("The table has every required column.", True),
        "no_nulls_in_required_columns": (f"No null {', '.join(schema.required) or '(none required)'}.", True),
        "dates_parse": ("Every required timestamp is an ISO-8601 UTC instant.", True),
    }
    if schema.key_columns:
        checks[f"{'_'.join(schema.key_columns)}_unique"] = (
            f"{', '.join(schema.key_columns)} is unique within each partition.", True)
    checks["row_count_not_anomalous"] = (
        f"The partition's row count is within {low}x-{high}x the median of the "
        f"{spec.quality.row_count_history} partitions before.", False)
    return checks


def build_checks(spec: DatasetSpec) -> dg.AssetChecksDefinition:
    checks = check_names(spec)
    key = cleaned_key(spec.name)

    @dg.multi_asset_check(
        specs=[dg.AssetCheckSpec(name, asset=key, description=text, blocking=blocking)
               for name, (text, blocking) in checks.items()],
        name=f"{spec.name}_checks",
        can_subset=False,
    )
    def dataset_checks(context: dg.AssetCheckExecutionContext,
                       warehouse: WarehouseResource) -> Iterator[dg.AssetCheckResult]:
        """Audit the stored partitions of this run (or the latest stored partition when run on its own)."""
        from orchestration_platform.lib.ingestion import dataset_tables as tables

        store = warehouse.get_warehouse()
        table = tables.table_spec(spec.schema, spec.partitions.cadence)
        missing = tables.missing_columns(store, table, spec.schema)
        yield dg.AssetCheckResult(check_name="required_columns_present", passed=not missing,
                                  metadata={"missing_columns": ", ".join(missing) or "none", "table": table.name})
        if missing:
            for name in list(checks)[1:]:
                yield dg.AssetCheckResult(check_name=name, passed=False,
                                          metadata={"reason": f"table lacks {', '.join(missing)}"})
            return
        if context.has_partition_key or context.has_partition_key_range:
            partitions = list(context.partition_keys)
        else:
            latest = tables.latest_partition(store, table)
            partitions = [latest] if latest else []
        audits = tables.audit_partitions(store, table, spec.schema, partitions)
        checked = ", ".join(partitions[:3]) + (f" ... ({len(partitions)} partitions)" if len(partitions) > 3 else "")
        named = [("no_nulls_in_required_columns", "null_required"), ("dates_parse", "unparsed_dates")]
        if spec.schema.key_columns:
            named.append((f"{'_'.join(spec.schema.key_columns)}_unique", "duplicate_keys"))
        for check_name, field in named:
            failing = [a.partition for a in audits if getattr(a, field)]
            yield dg.AssetCheckResult(check_name=check_name, passed=not failing, metadata={
                "offending_rows": dg.MetadataValue.int(sum(getattr(a, field) for a in audits)),
                "failing_partitions": ", ".join(failing[:10]) or "none",
                "checked_partitions": checked,
            })
        anomalies, ratios = [], []
        counts = tables.stored_row_counts(store, table, max(partitions)) if partitions else {}
        for audit in audits:
            history = tables.history_before(counts, audit.partition, spec.quality.row_count_history)
            anomalous, median = tables.row_count_is_anomalous(audit.rows, history, spec.quality.row_count_band)
            if median:
                ratios.append(audit.rows / median)
            if anomalous:
                anomalies.append(f"{audit.partition}: {audit.rows} rows vs median {median:.0f}")
        yield dg.AssetCheckResult(
            check_name="row_count_not_anomalous",
            passed=not anomalies,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "rows": dg.MetadataValue.int(sum(a.rows for a in audits)),
                "ratio_to_recent_median": dg.MetadataValue.float(round(ratios[-1], 3) if ratios else 1.0),
                "anomalies": "; ".join(anomalies[:10]) or "none",
            },
        )

    return dataset_checks


def build_job_and_schedule(spec: DatasetSpec, partitions: dg.PartitionsDefinition
                           ) -> tuple[Any, dg.ScheduleDefinition]:
    """The dataset's job (raw -> cleaned -> checks -> what is built on it in the group) and its schedule,
    which runs the last complete partition once the publishing delay has passed."""
    from orchestration_platform.defs.ingestion.dataset_assets import GROUP, raw_key

    selection = (dg.AssetSelection.assets(raw_key(spec.name), cleaned_key(spec.name)).downstream()
                 & dg.AssetSelection.groups(GROUP))
    job = dg.define_asset_job(
        f"{spec.name}_ingestion",
        selection=selection,
        partitions_def=partitions,
        # the steps run one after another anyway: one process saves a process start per step
        executor_def=dg.in_process_executor,
        description=f"Download, clean and check {spec.name} for one {spec.partitions.cadence} partition (or a range).",
        run_tags=max_runtime_tags(f"{spec.name}_ingestion"),
    )
    delay = spec.partitions.delay()
    hours, minutes = divmod(delay.seconds // 60, 60)
    timing = {"minute_of_hour": minutes}
    if spec.partitions.cadence != "hourly":
        timing["hour_of_day"] = hours
    if spec.partitions.cadence == "weekly":
        timing["day_of_week"] = delay.days % 7
    if spec.partitions.cadence == "monthly":
        timing["day_of_month"] = 1 + delay.days
    schedule = dg.build_schedule_from_partitioned_job(
        job,
        name=f"{spec.name}_schedule",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Ingest the last complete {spec.partitions.cadence} partition of {spec.name}, "
                    f"{spec.partitions.publish_delay} after it closes (the source's publishing delay).",
        **timing,
    )
    return job, schedule
