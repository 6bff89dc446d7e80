"""Checks on the cleaned daily cases, evaluated on the stored rows of the partitions just written.

The blocking ones (columns, nulls, dates, key) stop `daily_regional_summary` from being built
from a bad day in the same run. The row-count check only warns: a quiet day is news, not an error.
"""


from collections.abc import Iterator

import dagster as dg

from orchestration_platform.defs.ingestion.assets import CLEANED_KEY
from orchestration_platform.defs.ingestion.warehouse import WarehouseResource

CHECKS = {
    "required_columns_present": ("The table has every required column.", True),
    "no_nulls_in_required_columns": ("No null report_id, region, reported_at or confirmed_cases.", True),
    "dates_parse": ("Every reported_at is an ISO-8601 UTC instant.", True),
    "report_id_unique": ("report_id is unique within each day.", True),
    "row_count_not_anomalous": ("The day's row count is within 0.5x-2x the median of the 7 days before.", False),
}


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(name, asset=CLEANED_KEY, description=text, blocking=blocking)
        for name, (text, blocking) in CHECKS.items()
    ],
    name="cleaned_daily_cases_checks",
    can_subset=False,
)
def cleaned_daily_cases_checks(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> Iterator[dg.AssetCheckResult]:
    """Audit the stored partitions of this run (or the latest stored day when run on its own)."""
    from orchestration_platform.lib.ingestion.daily_cases import (
        CLEANED_TABLE,
        audit_partitions,
        history_before,
        missing_columns,
        row_count_is_anomalous,
        stored_row_counts,
    )

    store = warehouse.get_warehouse()
    missing = missing_columns(store)
    yield dg.AssetCheckResult(
        check_name="required_columns_present",
        passed=not missing,
        metadata={"missing_columns": ", ".join(missing) or "none", "table": CLEANED_TABLE.name},
    )
    if missing:
        for name in list(CHECKS)[1:]:
            yield dg.AssetCheckResult(check_name=name, passed=False,
                                      metadata={"reason": f"table lacks {', '.join(missing)}"})
        return
    if context.has_partition_key or context.has_partition_key_range:
        partitions = list(context.partition_keys)
    else:
        latest = store.query(f'SELECT max({CLEANED_TABLE.partition_column}) FROM "{CLEANED_TABLE.name}"')[0][0]
        partitions = [str(latest)] if latest else []
    audits = audit_partitions(store, partitions)
    checked = ", ".join(partitions[:3]) + (f" ... ({len(partitions)} days)" if len(partitions) > 3 else "")

    def bad_days(field: str) -> list[str]:
        return [a.partition for a in audits if getattr(a, field)]

    for check_name, field in (("no_nulls_in_required_columns", "null_required"),
                              ("dates_parse", "unparsed_dates"), ("report_id_unique", "duplicate_keys")):
        failing = bad_days(field)
        yield dg.AssetCheckResult(
            check_name=check_name,
            passed=not failing,
            metadata={
                "offending_rows": dg.MetadataValue.int(sum(getattr(a, field) for a in audits)),
                "failing_days": ", ".join(failing[:10]) or "none",
                "checked_days": checked,
            },
        )
    anomalies, ratios = [], []
    counts = stored_row_counts(store, max(partitions)) if partitions else {}
    for audit in audits:
        anomalous, median = row_count_is_anomalous(audit.rows, history_before(counts, audit.partition))
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
