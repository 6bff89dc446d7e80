"""Training through Pipes, the evaluation against the served model, and the gate in Dagster: the request
records what the reviewer needs (metrics against the served model, lineage, who trained it), a worse
candidate is never offered, and deployments of unapproved versions are refused."""

from __future__ import annotations

import random
from datetime import timedelta

import psycopg
import pytest

from orchestration_platform.devstack.events import EventGenerator, produce_events
from orchestration_platform.lib.ml.approval_policy import ApprovalPolicy, Reviewer
from orchestration_platform.lib.ml.approvals import ApprovalError, decide, pending
from orchestration_platform_tests.ml import flow
from orchestration_platform_tests.ml.conftest import DAY, produce_hours


def _produce_noise_hours(bootstrap: str, topic: str, start, hours: int, per_hour: int) -> None:
    """Transactions whose labels are coin flips: a model trained on them learns nothing."""
    generator, rng = EventGenerator(seed=99), random.Random(4)
    events, labels = [], []
    for i in range(hours * per_hour):
        event, _ = generator.transaction(start + timedelta(seconds=3600 * hours * i / (hours * per_hour)))
        events.append(event)
        labels.append(generator.label(event, rng.random() < 0.3, start + timedelta(hours=hours)))
    produce_events(bootstrap, topic, events + labels)


def test_training_evaluation_and_the_gate(
    kafka_bootstrap, ml_env, ml_resources, instance, serving_resource, serving
):
    produce_hours(kafka_bootstrap, ml_env["topic"], hours=4, per_hour=1000, seed=1)
    _produce_noise_hours(kafka_bootstrap, ml_env["topic"], DAY + timedelta(hours=4), 3, 1000)
    produce_hours(
        kafka_bootstrap, ml_env["topic"], hours=1, per_hour=1000, seed=2, start=DAY + timedelta(hours=7)
    )
    flow.consume(ml_resources, instance)
    flow.compute_hours(ml_resources, instance, DAY, 8)
    resources = {**ml_resources, "model_serving": serving_resource}

    first = flow.train(resources, instance, DAY + timedelta(hours=4), 4)
    assert first.success
    v1 = flow.candidate_version(first)
    run_logs = [e.message for e in instance.all_logs(first.run_id) if e.message]
    assert any("training on" in m for m in run_logs)  # the training process's log streamed back
    metadata = first.asset_materializations_for_node("ml__candidate_model")[0].metadata
    assert metadata["holdout_roc_auc"].value > 0.8
    expected_partitions = ",".join(f"{DAY + timedelta(hours=h):%Y-%m-%d-%H:%M}" for h in range(4))
    assert metadata["feature_partitions"].value == expected_partitions
    tags = ml_resources["model_registry"].open().tags(v1)
    assert tags["feature_partitions"] == expected_partitions and tags["evaluation"] == "passed"

    # The request carries what the review page shows; the launching run is recorded as the requester.
    request = first.asset_materializations_for_node("ml__model_approval_request")[0].metadata
    assert request["requested_by"].value == f"dagster run {first.run_id[:8]}"
    assert request["review_page"].value.endswith(f"/#fraud_detector-{v1}")
    alice = Reviewer(name="alice@example.com", via="proxy")
    with psycopg.connect(ml_env["postgres_url"], autocommit=True) as conn:
        (offered,) = pending(conn)
        assert offered.metrics["candidate"]["roc_auc"] == pytest.approx(metadata["holdout_roc_auc"].value)
        assert offered.metrics["served"] == {"version": "none"}  # nothing served yet: the baseline applies
        assert offered.metrics["feature_partitions"] == expected_partitions
        assert "baseline" in offered.metrics["evaluation_reason"]
        approved = decide(conn, model_name="fraud_detector", version=v1, decision="approve", reviewer=alice,
                          comment="good holdout", source="review-page", policy=ApprovalPolicy())  # fmt: skip
    assert approved.status == "approved" and approved.reviewer == "alice@example.com"
    assert flow.deploy(
        resources, instance, {"ops": {"ml__served_model": {"config": {"version": v1}}}}
    ).success

    # A candidate trained on noise is worse than the served model on the same holdout: never offered.
    second = flow.train(resources, instance, DAY + timedelta(hours=8), 4)
    assert not second.success
    v2 = flow.candidate_version(second)
    check = second.get_asset_check_evaluations()[0]
    assert check.check_name == "beats_served_model" and not check.passed
    assert check.metadata["served_version"].value == v1
    assert ml_resources["model_registry"].open().tags(v2)["evaluation"] == "worse"
    assert not second.asset_materializations_for_node("ml__model_approval_request")
    with (
        psycopg.connect(ml_env["postgres_url"], autocommit=True) as conn,
        pytest.raises(ApprovalError, match="no approval was requested"),
    ):
        decide(conn, model_name="fraud_detector", version=v2, decision="approve", reviewer=alice, source="cli")

    # Launching the deployment by hand for an unapproved (or made-up) version is refused; v1 keeps serving.
    for version in (v2, "999"):
        attempt = flow.deploy(
            resources, instance, {"ops": {"ml__served_model": {"config": {"version": version}}}}
        )
        assert not attempt.success
    failures = [e for e in attempt.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "999" in failures[0].event_specific_data.error.message
    assert serving.get("/version").json()["version"] == v1

    # Decisions on versions that are no longer pending are refused, with the reason.
    with (
        psycopg.connect(ml_env["postgres_url"], autocommit=True) as conn,
        pytest.raises(ApprovalError, match=f"version {v1} is deployed by alice@example.com"),
    ):
        decide(conn, model_name="fraud_detector", version=v1, decision="reject",
               reviewer=Reviewer(name="mallory", via="proxy"), source="review-page")  # fmt: skip


def test_training_without_enough_labelled_hours_says_what_is_missing(
    kafka_bootstrap, ml_env, ml_resources, instance
):
    produce_hours(kafka_bootstrap, ml_env["topic"], hours=1, per_hour=300)
    flow.consume(ml_resources, instance)
    flow.compute_hours(ml_resources, instance, DAY, 1)
    result = flow.train(ml_resources, instance, DAY + timedelta(hours=1), 2)
    assert not result.success
    logs = " ".join(e.message or "" for e in instance.all_logs(result.run_id))
    assert "1 hour(s) with labelled features" in logs
    assert result.asset_materializations_for_node("ml__candidate_model") == []
