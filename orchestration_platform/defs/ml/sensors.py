"""ML sensors: consume on lag, recompute hours that changed, report approval decisions, deploy approvals.

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
from orchestration_platform.defs.ml.events import CONSUMER_GROUP, consume_payment_events, payments_topic
from orchestration_platform.defs.ml.features import compute_transaction_features
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


@dg.sensor(
    name="payment_events_lag",
    job=consume_payment_events,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts a bounded consumption when the topic's lag passes ML_CONSUME_LAG_THRESHOLD or "
    "ML_CONSUME_INTERVAL_S has passed with events waiting; records the lag as an observation (plotted).",
)
def payment_events_lag(
    context: dg.SensorEvaluationContext, kafka: KafkaResource, postgres: PostgresResource
) -> dg.SensorResult:
    from confluent_kafka import Consumer

    from orchestration_platform.lib.ml.event_store import ensure_schema, topic_lag

    topic = get_settings().ml_events_topic
    state = json.loads(context.cursor) if context.cursor else {}
    consumer = Consumer(kafka.consumer_config(CONSUMER_GROUP + "-lag-probe") | {"socket.timeout.ms": 5000})
    try:
        with postgres.connect(autocommit=True) as conn:
            conn.execute(f"SET statement_timeout = {int(POLL_TIMEOUT_S * 1000)}")
            ensure_schema(conn)
            lag = sum(topic_lag(consumer, conn, CONSUMER_GROUP, topic, timeout_s=POLL_TIMEOUT_S).values())
    finally:
        consumer.close()
    now = time.time()
    due = now - state.get("last_request", 0) >= _int_env("ML_CONSUME_INTERVAL_S", 300)
    threshold = _int_env("ML_CONSUME_LAG_THRESHOLD", 10_000)
    observation = dg.AssetObservation(asset_key=payments_topic.key, metadata={"consumer_lag": lag})
    if lag >= threshold or (lag > 0 and due):
        reason = f"lag {lag} >= {threshold}" if lag >= threshold else f"lag {lag} and the interval has passed"
        context.log.info(f"requesting consumption: {reason}")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(tags={"ml/consumer_lag": str(lag)})],
            cursor=json.dumps({"last_request": now}),
            asset_events=[observation],
        )
    return dg.SensorResult(
        skip_reason=f"lag {lag} (threshold {threshold})", cursor=context.cursor, asset_events=[observation]
    )


@dg.sensor(
    name="stale_feature_hours",
    job=compute_transaction_features,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Recomputes closed hours whose events (or labels) changed after their features were "
    "computed: late events re-materialize their hour.",
)
def stale_feature_hours(context: dg.SensorEvaluationContext, postgres: PostgresResource) -> dg.SensorResult:
    from orchestration_platform.lib.ml.features import ensure_feature_schema, stale_hours

    start = datetime.strptime(get_settings().ml_features_start, "%Y-%m-%d-%H:%M").replace(tzinfo=UTC)
    with postgres.connect(autocommit=True) as conn:
        conn.execute(f"SET statement_timeout = {int(POLL_TIMEOUT_S * 1000)}")
        ensure_feature_schema(conn)
        hours = [(h, seq) for h, seq in stale_hours(conn, datetime.now(UTC)) if h >= start]
    requests = [
        dg.RunRequest(partition_key=f"{hour:%Y-%m-%d-%H:%M}", run_key=f"features:{hour:%Y%m%d%H}:{seq}")
        for hour, seq in hours
    ]
    return dg.SensorResult(run_requests=requests, skip_reason=None if requests else "no hour changed")


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
