"""End to end: produced events -> store -> hourly features -> trained candidate -> approval from the
CLI -> deployment started by the sensor -> a prediction served by exactly the approved version."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import dagster as dg

from orchestration_platform.defs.ml.features import FEATURES_KEY
from orchestration_platform.defs.ml.sensors import (
    approved_model_deployments,
    model_approval_audit,
    stale_feature_hours,
)
from orchestration_platform_tests.ml import flow
from orchestration_platform_tests.ml.conftest import DAY, produce_hours

CLI = str(Path(sys.executable).parent / "orchestration-platform")


def test_events_to_prediction_by_the_approved_model(
    kafka_bootstrap, ml_env, ml_resources, instance, serving, serving_resource
):
    produce_hours(kafka_bootstrap, ml_env["topic"], hours=4, per_hour=1500)
    stored = flow.consume(ml_resources, instance)
    assert stored["transactions_stored"] == 6000 and stored["labels_stored"] == 6000
    assert stored["dead_letters"] == 0 and stored["lag_after"] == 0 and stored["hours_touched"] == 4

    # The sensor asks, in one backfill, for exactly the four closed hours that received events.
    with dg.build_sensor_context(instance=instance, resources=ml_resources) as context:
        (backfill,) = stale_feature_hours(context).run_requests
    requested = sorted(backfill.asset_graph_subset.partitions_subsets_by_asset_key[FEATURES_KEY].get_partition_keys())
    assert requested == [f"{DAY + timedelta(hours=h):%Y-%m-%d-%H:%M}" for h in range(4)]
    for partition_key in requested:
        assert flow.compute_hour(
            ml_resources,
            instance,
            dg.HourlyPartitionsDefinition(start_date="2026-01-01-00:00")
            .time_window_for_partition_key(partition_key)
            .start,
        ).success
    with dg.build_sensor_context(instance=instance, resources=ml_resources) as context:
        assert not stale_feature_hours(context).run_requests  # nothing left to recompute

    trained = flow.train(ml_resources, instance, DAY + timedelta(hours=4), 4)
    assert trained.success, trained.all_events
    version = flow.candidate_version(trained)
    checks = trained.get_asset_check_evaluations()
    assert [c.check_name for c in checks] == ["beats_served_model"] and checks[0].passed

    listing = subprocess.run([CLI, "approvals"], capture_output=True, text=True, env=os.environ, check=True)
    assert f"version {version}" in listing.stdout and "pending" in listing.stdout
    decided = subprocess.run(
        [CLI, "approve", version, "--comment", "holdout looks right"],  # as the OS user running the tests
        capture_output=True, text=True, env=os.environ,
    )  # fmt: skip
    assert decided.returncode == 0, decided.stderr
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert f"approved by {me}" in decided.stdout

    resources = {**ml_resources, "model_serving": serving_resource}
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        requests = approved_model_deployments(context).run_requests
    assert len(requests) == 1 and requests[0].tags["ml/model_version"] == version
    deployed = flow.deploy(resources, instance, requests[0].run_config)
    assert deployed.success, deployed.all_events

    assert serving.get("/version").json()["version"] == version
    assert serving.get("/healthz").status_code == 200
    answer = serving.post(
        "/predict",
        json={"transactions": [
            {"occurred_at": "2026-03-02T10:00:00Z", "card_id": "card-1", "merchant_category": "grocery", "amount": 23.5,
             "card_country": "DE", "merchant_country": "DE", "channel": "card_present"},
            {"occurred_at": "2026-03-02T03:00:00Z", "card_id": "card-2", "merchant_category": "electronics",
             "amount": 1900.0, "card_country": "DE", "merchant_country": "BR", "channel": "online",
             "card_tx_count_hour": 6},
        ]},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["version"] == version
    genuine, fraud = (p["fraud_probability"] for p in body["predictions"])
    assert fraud > genuine  # the served model learned the pattern the producer puts into fraud

    # The CLI decision and the deployment are audit records shown in the UI.
    with dg.build_sensor_context(instance=instance, resources=ml_resources) as context:
        audit = model_approval_audit(context).asset_events
    actions = [(e.metadata["action"].value, e.metadata["actor"].value) for e in audit]
    assert ("approved", me) in actions
    assert any(action == "deployed" for action, _ in actions)
