"""ML sensors: consume on lag, recompute hours that changed, report approval decisions, deploy approvals.

They never start runs that collide: one consume run per partition set at a time (an in-progress check
on the set's tag; the partition locks in PostgreSQL are the last line), and one backfill of all stale
feature hours at a time.

Every poll is bounded (short Kafka and PostgreSQL timeouts) so a slow broker or database makes a tick
fail fast instead of blocking the daemon. Thresholds come from the environment:
ML_CONSUME_LAG_THRESHOLD (default 10000 messages) and ML_CONSUME_INTERVAL_S (default 300 s).
"""

import json
import os
import time
from datetime import UTC, datetime

import dagster as dg

from orchestration_platform.defs.ml.approval import APPROVAL_KEY
from orchestration_platform.defs.ml.deployment import deploy_approved_model
from orchestration_platform.defs.ml.events import (
    CONSUMER_GROUP,
    ConsumeConfig,
    consume_payment_events,
    payments_topic,
)
from orchestration_platform.defs.ml.features import FEATURES_KEY, hourly_partitions
from orchestration_platform.defs.ml.kafka import KafkaResource
from orchestration_platform.defs.ml.registry import ModelRegistryResource
from orchestration_platform.defs.shared.postgres import PostgresResource
from orchestration_platform.settings import get_settings

POLL_TIMEOUT_S = 5.0


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip() or str(default)
    if not raw.isdigit():
        raise dg.Failure(f"{name}={raw!r} is not a whole number: set it to e.g. {default}")
    return int(raw)


# Runs that have not finished: a consumer run in any of these still holds (or will hold) its partitions.
UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
CONSUMER_TAG = "ml/consumer"  # "i/N": consumer i of N (its partition set)
STALE_HOURS_TAG = "ml/stale_feature_hours"


def unfinished_consumer_sets(instance: dg.DagsterInstance) -> list[str]:
    """The partition sets ("i/N") of consume runs that have not finished; "*" for a run without one (manual)."""
    runs = instance.get_runs(dg.RunsFilter(job_name=consume_payment_events.name, statuses=UNFINISHED))
    return [run.tags.get(CONSUMER_TAG, "*") for run in runs]


@dg.sensor(
    name="payment_events_lag",
    job=consume_payment_events,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts bounded consumptions when the topic's lag passes ML_CONSUME_LAG_THRESHOLD or "
    "ML_CONSUME_INTERVAL_S has passed with events waiting: one run per partition set (ML_CONSUMERS sets), "
    "never a second run of a set whose run has not finished. Records the lag as an observation (plotted).",
)
def payment_events_lag(
    context: dg.SensorEvaluationContext, kafka: KafkaResource, postgres: PostgresResource
) -> dg.SensorResult:
    from confluent_kafka import Consumer

    from orchestration_platform.lib.ml.event_store import ensure_schema, owned_partitions, topic_lag

    topic = get_settings().ml_events_topic
    state = json.loads(context.cursor) if context.cursor else {}
    consumer = Consumer(kafka.consumer_config(CONSUMER_GROUP + "-lag-probe") | {"socket.timeout.ms": 5000})
    try:
        with postgres.connect(autocommit=True) as conn:
            conn.execute(f"SET statement_timeout = {int(POLL_TIMEOUT_S * 1000)}")
            ensure_schema(conn)
            by_partition = topic_lag(consumer, conn, CONSUMER_GROUP, topic, timeout_s=POLL_TIMEOUT_S)
    finally:
        consumer.close()
    lag = sum(by_partition.values())
    now = time.time()
    due = now - state.get("last_request", 0) >= _int_env("ML_CONSUME_INTERVAL_S", 300)
    threshold = _int_env("ML_CONSUME_LAG_THRESHOLD", 10_000)
    observation = dg.AssetObservation(asset_key=payments_topic.key, metadata={"consumer_lag": lag})
    if not (lag >= threshold or (lag > 0 and due)):
        return dg.SensorResult(
            skip_reason=f"lag {lag} (threshold {threshold})",
            cursor=context.cursor,
            asset_events=[observation],
        )
    sets = kafka.consumers
    running = unfinished_consumer_sets(context.instance)
    if any(not tag.endswith(f"/{sets}") for tag in running):
        # A manual run, or runs split another way (ML_CONSUMERS changed): their partitions overlap ours.
        return dg.SensorResult(
            skip_reason=f"lag {lag}: waiting for consume runs {sorted(set(running))} to finish",
            cursor=context.cursor,
            asset_events=[observation],
        )
    requests = []
    number = state.get("requests", 0) + 1
    for index in range(sets):
        owned = owned_partitions(list(by_partition), index, sets)
        set_lag = sum(by_partition[p] for p in owned)
        if set_lag == 0 or f"{index}/{sets}" in running:
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"consume-{index}-of-{sets}-{number}",
                run_config=dg.RunConfig(
                    ops={"ml__payment_events": ConsumeConfig(consumer_index=index, consumers=sets)}
                ),
                tags={"ml/consumer_lag": str(set_lag), CONSUMER_TAG: f"{index}/{sets}"},
            )
        )
    if not requests:
        return dg.SensorResult(
            skip_reason=f"lag {lag}: every partition set with lag has a consume run in progress",
            cursor=context.cursor,
            asset_events=[observation],
        )
    reason = f"lag {lag} >= {threshold}" if lag >= threshold else f"lag {lag} and the interval has passed"
    context.log.info(f"requesting {len(requests)} consumption run(s) of {sets} partition set(s): {reason}")
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps({"last_request": now, "requests": number}),
        asset_events=[observation],
    )


@dg.sensor(
    name="stale_feature_hours",
    asset_selection=[FEATURES_KEY],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Recomputes closed hours whose events (or labels) changed after their features were "
    "computed (late events re-materialize their hour): one backfill per tick for all of them, and none "
    "while the previous one is still running.",
)
def stale_feature_hours(context: dg.SensorEvaluationContext, postgres: PostgresResource) -> dg.SensorResult:
    # Sensors launch backfills through RunRequest.for_asset_graph_subset; its argument type is internal.
    from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
    from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus

    from orchestration_platform.lib.ml.features import ensure_feature_schema, stale_hours

    running = context.instance.get_backfills(
        filters=BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED], tags={STALE_HOURS_TAG: "true"})
    )
    if running:
        return dg.SensorResult(skip_reason=f"backfill {running[0].backfill_id} of stale hours still running")
    start = datetime.strptime(get_settings().ml_features_start, "%Y-%m-%d-%H:%M").replace(tzinfo=UTC)
    with postgres.connect(autocommit=True) as conn:
        conn.execute(f"SET statement_timeout = {int(POLL_TIMEOUT_S * 1000)}")
        ensure_feature_schema(conn)
        hours = [hour for hour, _ in stale_hours(conn, datetime.now(UTC)) if hour >= start]
    if not hours:
        return dg.SensorResult(skip_reason="no hour changed")
    keys = [f"{hour:%Y-%m-%d-%H:%M}" for hour in hours]
    subset = AssetGraphSubset(
        partitions_subsets_by_asset_key={FEATURES_KEY: hourly_partitions.subset_with_partition_keys(keys)}
    )
    context.log.info(f"one backfill for {len(keys)} stale hour(s): {keys[0]} .. {keys[-1]}")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest.for_asset_graph_subset(
                subset, tags={STALE_HOURS_TAG: "true", "ml/hours": str(len(keys))}
            )
        ]
    )


@dg.sensor(
    name="model_approval_audit",
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Expires pending approvals past their time to live and shows every approval record "
    "(CLI decisions, expiries, deployments) as a materialization of ml/model_approval.",
)
def model_approval_audit(context: dg.SensorEvaluationContext, postgres: PostgresResource) -> dg.SensorResult:
    from orchestration_platform.lib.ml.approvals import audit_after, expire_due

    last_id = int(context.cursor or 0)
    with postgres.connect(autocommit=True) as conn:
        conn.execute(f"SET statement_timeout = {int(POLL_TIMEOUT_S * 1000)}")
        expired = expire_due(conn)
        records = audit_after(conn, last_id)
    for approval in expired:
        context.log.info(
            f"approval of version {approval.version} expired at {approval.expires_at:%Y-%m-%d %H:%M}Z"
        )
    events = [
        dg.AssetMaterialization(
            asset_key=APPROVAL_KEY,
            description=f"version {r['version']}: {r['action']} by {r['actor']}",
            metadata={
                "audit_id": r["id"],
                "model_version": r["version"],
                "action": r["action"],
                "actor": r["actor"],
                "comment": r["comment"] or "",
                "source": r["source"],
                "at": r["at"].isoformat(),
                "details": dg.MetadataValue.json(r["details"]),
            },
        )
        for r in records
        if r["source"] != "dagster-ui"  # the decide job reported those itself
    ]
    return dg.SensorResult(asset_events=events, cursor=str(records[-1]["id"]) if records else context.cursor)


@dg.sensor(
    name="approved_model_deployments",
    job=deploy_approved_model,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts a deployment when a model version is approved (one run per approval).",
)
def approved_model_deployments(
    context: dg.SensorEvaluationContext, postgres: PostgresResource, model_registry: ModelRegistryResource
) -> dg.SensorResult:
    from orchestration_platform.lib.ml.approvals import approved_waiting

    with postgres.connect(autocommit=True) as conn:
        conn.execute(f"SET statement_timeout = {int(POLL_TIMEOUT_S * 1000)}")
        approvals = [a for a in approved_waiting(conn) if a.model_name == model_registry.model_name]
    requests = [
        dg.RunRequest(
            run_key=f"deploy:{a.model_name}:{a.version}:{a.id}",
            run_config={"ops": {"ml__served_model": {"config": {"version": a.version}}}},
            tags={"ml/model_version": a.version, "ml/approved_by": a.reviewer or ""},
        )
        for a in approvals
    ]
    return dg.SensorResult(run_requests=requests, skip_reason=None if requests else "no approval waiting")
