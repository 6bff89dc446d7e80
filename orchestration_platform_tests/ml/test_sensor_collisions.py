"""The ML sensors never start runs that collide: one consume run per partition set at a time, none while
runs split another way are unfinished, and one backfill for all stale feature hours per tick (none while
the previous one runs). Real instance, real broker and PostgreSQL; the in-progress runs are real runs
recorded in the instance."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill

from orchestration_platform.defs.ml.events import consume_payment_events, payment_events, payments_topic
from orchestration_platform.defs.ml.features import FEATURES_KEY, transaction_features
from orchestration_platform.defs.ml.kafka import KafkaResource
from orchestration_platform.defs.ml.sensors import payment_events_lag, stale_feature_hours
from orchestration_platform.devstack.events import ensure_topic, generate_events, produce_events
from orchestration_platform_tests.ml import flow
from orchestration_platform_tests.ml.conftest import DAY, produce_hours

DUE = json.dumps({"last_request": 0})


def _defs(resources: dict) -> dg.Definitions:
    return dg.Definitions(
        assets=[payments_topic, payment_events, transaction_features],
        jobs=[consume_payment_events],
        sensors=[payment_events_lag, stale_feature_hours],
        resources=resources,
    )


def _tick(sensor, instance, resources, cursor=None):
    with dg.build_sensor_context(
        instance=instance, resources=resources, cursor=cursor, definitions=_defs(resources)
    ) as context:
        return sensor.evaluate_tick(context)


def _start_run(instance: dg.DagsterInstance, resources: dict, tags: dict) -> dg.DagsterRun:
    """A consume run recorded as started (what the daemon leaves while a run executes)."""
    job = _defs(resources).resolve_job_def(consume_payment_events.name)
    return instance.create_run_for_job(job_def=job, tags=tags, status=dg.DagsterRunStatus.STARTED)


@pytest.fixture
def four_consumers(ml_resources, kafka_bootstrap, monkeypatch) -> dict:
    topic = f"payments4-{uuid.uuid4().hex[:10]}"
    ensure_topic(kafka_bootstrap, topic, partitions=4)
    monkeypatch.setenv("ML_EVENTS_TOPIC", topic)
    monkeypatch.setenv("ML_CONSUME_LAG_THRESHOLD", "1")
    produce_events(kafka_bootstrap, topic, generate_events(400, DAY, DAY + timedelta(hours=1)))
    kafka = KafkaResource(
        bootstrap_servers=kafka_bootstrap, session_timeout_ms=2000, heartbeat_interval_ms=500, consumers=4
    )
    return {**ml_resources, "kafka": kafka}


def test_one_consume_run_per_partition_set_and_none_for_a_set_still_running(four_consumers, instance):
    first = _tick(payment_events_lag, instance, four_consumers, cursor=DUE)
    assert [r.tags["ml/consumer"] for r in first.run_requests] == ["0/4", "1/4", "2/4", "3/4"]
    configs = [r.run_config["ops"]["ml__payment_events"]["config"] for r in first.run_requests]
    assert [(c["consumer_index"], c["consumers"]) for c in configs] == [(0, 4), (1, 4), (2, 4), (3, 4)]
    assert len({r.run_key for r in first.run_requests}) == 4

    running = _start_run(instance, four_consumers, {"ml/consumer": "1/4"})
    second = _tick(payment_events_lag, instance, four_consumers, cursor=first.cursor)
    assert [r.tags["ml/consumer"] for r in second.run_requests] == ["0/4", "2/4", "3/4"]
    assert not {r.run_key for r in second.run_requests} & {r.run_key for r in first.run_requests}

    instance.report_run_canceled(running)  # finished: its set may run again
    assert len(_tick(payment_events_lag, instance, four_consumers, cursor=second.cursor).run_requests) == 4


@pytest.mark.parametrize("tags", [{}, {"ml/consumer": "0/2"}], ids=["manual run", "runs split in two"])
def test_no_consume_run_while_a_run_split_another_way_is_unfinished(four_consumers, instance, tags):
    _start_run(instance, four_consumers, tags)
    result = _tick(payment_events_lag, instance, four_consumers, cursor=DUE)
    assert result.run_requests == [] and "waiting for consume runs" in result.skip_message


def test_stale_hours_are_recomputed_by_one_backfill_per_tick(kafka_bootstrap, ml_env, ml_resources, instance):
    produce_hours(kafka_bootstrap, ml_env["topic"], hours=3, per_hour=100)
    flow.consume(ml_resources, instance)
    first = _tick(stale_feature_hours, instance, ml_resources)
    assert len(first.run_requests) == 1  # one backfill, not one run per hour
    subset = first.run_requests[0].asset_graph_subset
    assert sorted(subset.partitions_subsets_by_asset_key[FEATURES_KEY].get_partition_keys()) == [
        f"{DAY + timedelta(hours=h):%Y-%m-%d-%H:%M}" for h in range(3)
    ]

    # While that backfill runs, the next ticks start nothing.
    backfill = PartitionBackfill.from_asset_graph_subset(
        backfill_id="stale1", dynamic_partitions_store=instance, backfill_timestamp=0.0,
        asset_graph_subset=subset, tags=first.run_requests[0].tags, title=None, description=None, run_config=None,
    )  # fmt: skip
    instance.add_backfill(backfill)
    busy = _tick(stale_feature_hours, instance, ml_resources)
    assert busy.run_requests == [] and "stale1" in busy.skip_message

    instance.update_backfill(backfill.with_status(BulkActionStatus.COMPLETED_SUCCESS))
    flow.compute_hours(ml_resources, instance, DAY, 3)  # what the backfill's runs do
    done = _tick(stale_feature_hours, instance, ml_resources)
    assert done.run_requests == [] and done.skip_message == "no hour changed"
