"""Payment events: the Kafka topic, and the exactly-once store of its events in PostgreSQL."""

import dagster as dg
from pydantic import Field

from orchestration_platform.defs.ml.kafka import KafkaResource
from orchestration_platform.defs.shared.postgres import PostgresResource
from orchestration_platform.defs.shared.retries import STEP_RETRY
from orchestration_platform.defs.shared.run_limits import max_runtime_tags
from orchestration_platform.settings import get_settings

CONSUMER_GROUP = "ml-events-store"

payments_topic = dg.AssetSpec(
    key=["ml", "payments_topic"],
    group_name="ml",
    kinds={"kafka"},
    description="The Kafka topic of payment events (transactions and their later fraud labels; schema in "
    "docs/events.md). Written by the payment systems (locally: `orchestration-platform produce-events`). "
    "The lag sensor records its consumer lag here as observations.",
)


class ConsumeConfig(dg.Config):
    max_messages: int = Field(default=500_000, gt=0, description="Most messages one run consumes.")
    chunk_size: int = Field(
        default=20_000,
        gt=0,
        description="Messages per PostgreSQL transaction (a batch starts with 5,000 and doubles up to it, "
        "and shrinks again towards the topic's end).",
    )
    max_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Once past the topic's end at start, stop after this long (a live "
        "stream never goes idle; the next run continues from the stored offsets).",
    )
    consumer_index: int = Field(
        default=0,
        ge=0,
        description="This run is consumer `consumer_index` of `consumers` (set by the lag sensor).",
    )
    consumers: int = Field(
        default=1,
        ge=1,
        description="How many consumers split the topic; consumer i of N owns every N-th partition. The "
        "default 1 takes every partition no other consumer is writing (a manual Materialize).",
    )


@dg.asset(
    key=["ml", "payment_events"],
    group_name="ml",
    kinds={"kafka", "postgres"},
    deps=[payments_topic],
    pool="ml_events_consumer",
    retry_policy=STEP_RETRY,
)
def payment_events(
    context: dg.AssetExecutionContext, config: ConsumeConfig, kafka: KafkaResource, postgres: PostgresResource
) -> dg.MaterializeResult:
    """Consume a bounded batch of payment events into PostgreSQL, exactly once.

    With ML_CONSUMERS=N the lag sensor starts N runs at a time, run i consuming every N-th partition of the
    topic (a lock per partition in PostgreSQL: two runs never write the same partition).

    Tables `ml.transactions` and `ml.labels` get the valid events; `ml.dead_letters` gets malformed or
    schema-violating messages with the reason. Each chunk is committed together with the consumer
    offsets (`ml.consumer_offsets`), and a run starts from the offsets stored there, so a crash at any
    point neither loses nor duplicates an event.
    """
    from orchestration_platform.lib.ml.event_store import consume_batch

    topic = get_settings().ml_events_topic

    def progress(stats) -> None:
        context.log.info(
            f"{stats.consumed:,} messages consumed, {stats.transactions + stats.labels:,} stored, "
            f"{stats.dead_letters} dead letters"
        )

    if config.consumer_index >= config.consumers:
        raise dg.Failure(
            f"consumer_index={config.consumer_index} with consumers={config.consumers}: the index must be "
            f"0..{config.consumers - 1}"
        )
    stats = consume_batch(
        postgres.url,
        kafka.consumer_config(CONSUMER_GROUP),
        topic,
        consumer_index=config.consumer_index,
        consumers=config.consumers,
        max_messages=config.max_messages,
        chunk_size=config.chunk_size,
        max_seconds=config.max_seconds,
        progress=progress,
    )
    return dg.MaterializeResult(
        metadata={
            "topic": topic,
            "consumer": f"{config.consumer_index} of {config.consumers}",
            "partitions": ", ".join(map(str, stats.partitions)) or "none free",
            "consumed": stats.consumed,
            "transactions_stored": stats.transactions,
            "labels_stored": stats.labels,
            "dead_letters": stats.dead_letters,
            "dead_letter_reasons": dg.MetadataValue.json(stats.dead_letter_reasons),
            "events_per_s": round(stats.events_per_s, 1),
            "lag_after": stats.lag,
            "hours_touched": len(stats.hours),
            "seconds": round(stats.seconds, 3),
            "validate_seconds": round(stats.validate_seconds, 3),
            "postgres_seconds": round(stats.store_seconds, 3),
        }
    )


consume_payment_events = dg.define_asset_job(
    "consume_payment_events",
    selection=[payment_events],
    description="Consume a bounded batch of payment events from Kafka into PostgreSQL.",
    run_tags=max_runtime_tags("consume_payment_events"),
)
