"""Hourly transaction features, one partition per hour, with the checks that guard training."""

from datetime import datetime

import dagster as dg

from orchestration_platform.defs.ml.events import payment_events
from orchestration_platform.defs.shared.postgres import PostgresResource
from orchestration_platform.defs.shared.retries import STEP_RETRY
from orchestration_platform.defs.shared.run_limits import max_runtime_tags
from orchestration_platform.settings import get_settings

FEATURES_KEY = dg.AssetKey(["ml", "transaction_features"])
DRIFT_LIMIT = 4.0  # standard deviations from the previous 24 hours before the drift check warns

hourly_partitions = dg.HourlyPartitionsDefinition(start_date=get_settings().ml_features_start, timezone="UTC")


@dg.asset(
    key=FEATURES_KEY,
    group_name="ml",
    kinds={"postgres", "pandas"},
    deps=[payment_events],
    partitions_def=hourly_partitions,
    retry_policy=STEP_RETRY,
    check_specs=[
        dg.AssetCheckSpec(
            "no_null_features",
            asset=FEATURES_KEY,
            blocking=True,
            description="No feature column is null (labels may be: they arrive later).",
        ),
        dg.AssetCheckSpec(
            "features_in_range",
            asset=FEATURES_KEY,
            blocking=True,
            description="Every feature stays inside its documented range (no NaN).",
        ),
        dg.AssetCheckSpec(
            "no_feature_drift",
            asset=FEATURES_KEY,
            description=f"Mean log amount and online share within {DRIFT_LIMIT} standard "
            "deviations of the previous 24 hours (warns; drift alone does not block).",
        ),
    ],
)
def transaction_features(context: dg.AssetExecutionContext, postgres: PostgresResource):
    """Features of every transaction that happened in the partition's hour (UTC), in `ml.transaction_features`.

    Recomputing an hour replaces exactly its rows in one transaction, so re-runs are idempotent and late
    events (or late fraud labels) are picked up by re-materializing their hour: the `stale_feature_hours`
    sensor does this. Hours that fail the blocking checks are excluded from training.
    """
    from orchestration_platform.lib.ml import features as lib

    hour: datetime = context.partition_time_window.start
    with postgres.connect(autocommit=True) as conn:
        lib.ensure_feature_schema(conn)
        events, change_seq = lib.load_hour_events(conn, hour)
        context.log.info(f"hour {hour:%Y-%m-%d %H:00}: {len(events):,} transactions (change {change_seq})")
        frame = (
            lib.compute_features(events) if len(events) else events.reindex(columns=list(lib.FEATURE_COLUMNS))
        )
        written = lib.write_hour_features(conn, hour, events, frame, change_seq)
        nulls = lib.null_counts(conn, hour)
        outside = lib.out_of_range(conn, hour)
        history = lib.previous_hour_stats(conn, hour)
        drift_amount = lib.drift_score(written.mean_log_amount, [h[0] for h in history])
        drift_online = lib.drift_score(written.online_rate, [h[1] for h in history])
        blocking_ok = not any(nulls.values()) and not any(outside.values())
        lib.record_checks(conn, hour, blocking_ok and written.rows > 0)
    drifted = [
        name
        for name, score in (("mean_log_amount", drift_amount), ("online_rate", drift_online))
        if score is not None and score > DRIFT_LIMIT
    ]
    yield dg.MaterializeResult(
        metadata={
            "rows": written.rows,
            "rows_replaced": written.replaced,
            "labelled_rows": written.labelled,
            "fraud_rows": written.frauds,
            "fraud_rate": round(written.frauds / written.labelled, 5) if written.labelled else 0.0,
            "mean_log_amount": round(written.mean_log_amount, 5),
            "online_rate": round(written.online_rate, 5),
            "change_seq": written.change_seq,
        },
        data_version=dg.DataVersion(f"{hour:%Y%m%d%H}-{change_seq}"),
    )
    yield dg.AssetCheckResult(
        check_name="no_null_features",
        passed=not any(nulls.values()),
        metadata={"null_values": sum(nulls.values()), "by_column": dg.MetadataValue.json(nulls)},
    )
    yield dg.AssetCheckResult(
        check_name="features_in_range",
        passed=not any(outside.values()),
        metadata={"rows_out_of_range": sum(outside.values()), "by_column": dg.MetadataValue.json(outside)},
    )
    yield dg.AssetCheckResult(
        check_name="no_feature_drift",
        passed=not drifted,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "drift_mean_log_amount_sd": round(drift_amount, 3) if drift_amount is not None else -1.0,
            "drift_online_rate_sd": round(drift_online, 3) if drift_online is not None else -1.0,
            "history_hours": len(history),
            "drifted": ", ".join(drifted) or "none",
        },
    )


compute_transaction_features = dg.define_asset_job(
    "compute_transaction_features",
    selection=[transaction_features],
    partitions_def=hourly_partitions,
    description="Compute (or recompute) hourly transaction features.",
    run_tags=max_runtime_tags("compute_transaction_features"),
)
