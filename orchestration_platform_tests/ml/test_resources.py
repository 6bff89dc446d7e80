"""The ML resource bindings per deployment: production trains in Kubernetes Jobs, never in-process."""

from __future__ import annotations

import dagster as dg
import pytest

from orchestration_platform.defs.ml.resources import ml_resources_for
from orchestration_platform.defs.ml.training_launcher import TrainingLauncher
from orchestration_platform.defs.shared.resources import shared_resources_for


def test_each_deployment_binds_every_ml_resource(monkeypatch):
    monkeypatch.setenv("TRAINING_IMAGE", "ghcr.io/acme/orchestration-platform:0.1.0")
    for deployment in ("local", "test", "prod"):
        bound = ml_resources_for(deployment) | shared_resources_for(deployment)
        assert {"kafka", "model_registry", "training_launcher", "model_serving", "alert_webhook"} <= set(
            bound
        )
    prod = ml_resources_for("prod")["training_launcher"]
    assert prod.mode == "kubernetes" and prod.image == "ghcr.io/acme/orchestration-platform:0.1.0"
    assert ml_resources_for("test")["training_launcher"].mode == "subprocess"


def test_kubernetes_training_without_an_image_says_which_setting_to_set():
    with pytest.raises(dg.Failure, match="TRAINING_IMAGE"):
        TrainingLauncher(mode="kubernetes").run(None, extras={}, env={})  # type: ignore[arg-type]
