"""Steps of the ML pipeline as a user runs them (materializations through Dagster), for the tests."""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg

from orchestration_platform.defs.ml.approval import model_approval_request
from orchestration_platform.defs.ml.deployment import served_model
from orchestration_platform.defs.ml.events import payment_events
from orchestration_platform.defs.ml.features import transaction_features
from orchestration_platform.defs.ml.training import candidate_model


def consume(resources: dict, instance: dg.DagsterInstance, max_messages: int = 1_000_000) -> dict:
    result = dg.materialize(
        [payment_events],
        resources=resources,
        instance=instance,
        run_config={"ops": {"ml__payment_events": {"config": {"max_messages": max_messages}}}},
    )
    assert result.success
    return {
        k: v.value
        for k, v in result.asset_materializations_for_node("ml__payment_events")[0].metadata.items()
    }


def compute_hour(resources: dict, instance: dg.DagsterInstance, hour: datetime, raise_on_error: bool = True):
    return dg.materialize(
        [transaction_features],
        resources=resources,
        instance=instance,
        partition_key=f"{hour:%Y-%m-%d-%H:%M}",
        raise_on_error=raise_on_error,
    )


def compute_hours(resources: dict, instance: dg.DagsterInstance, start: datetime, hours: int) -> None:
    for i in range(hours):
        assert compute_hour(resources, instance, start + timedelta(hours=i)).success


def train(
    resources: dict, instance: dg.DagsterInstance, window_end: datetime, window_hours: int, seed: int = 0
):
    """Train and (if it passes evaluation) offer for approval, as the `train_candidate_model` job does."""
    return dg.materialize(
        [candidate_model, model_approval_request],
        resources=resources,
        instance=instance,
        run_config={
            "ops": {
                "ml__candidate_model": {
                    "config": {
                        "window_end": window_end.isoformat(),
                        "window_hours": window_hours,
                        "seed": seed,
                    }
                }
            }
        },
        raise_on_error=False,
    )


def deploy(resources: dict, instance: dg.DagsterInstance, run_config: dict):
    return dg.materialize(
        [served_model], resources=resources, instance=instance, run_config=run_config, raise_on_error=False
    )


def candidate_version(result) -> str:
    materialization = result.asset_materializations_for_node("ml__candidate_model")[0]
    return str(materialization.metadata["model_version"].value)
