"""The ML domain's resources, bound per deployment (`DAGSTER_DEPLOYMENT`): Kafka, the MLflow registry,
training (a Pipes subprocess locally, a Kubernetes Job in prod) and the serving endpoint."""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from orchestration_platform.defs.ml.kafka import KafkaResource
from orchestration_platform.defs.ml.registry import ModelRegistryResource
from orchestration_platform.defs.ml.serving_client import ServingEndpointResource
from orchestration_platform.defs.ml.training_launcher import TrainingLauncher
from orchestration_platform.settings import Deployment, get_settings


def parallel_consumers() -> int:
    """ML_CONSUMERS: how many consumer runs share the events topic (default 1)."""
    raw = os.environ.get("ML_CONSUMERS", "").strip() or "1"
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(
            f"ML_CONSUMERS={raw!r} is not a whole number >= 1: set it to the number of parallel consumer runs, "
            "at most the events topic's partition count (e.g. 4)"
        )
    return int(raw)


def ml_resources_for(deployment: Deployment) -> dict[str, Any]:
    settings = get_settings()
    common = {
        "kafka": KafkaResource(
            bootstrap_servers=dg.EnvVar("KAFKA_BOOTSTRAP_SERVERS"), consumers=parallel_consumers()
        ),
        "model_registry": ModelRegistryResource(
            postgres_url=dg.EnvVar("POSTGRES_URL"), artifact_root=settings.mlflow_artifact_root
        ),
    }
    if deployment == "prod":
        return common | {
            "training_launcher": TrainingLauncher(
                mode="kubernetes",
                image=settings.training_image,
                namespace=settings.training_namespace,
                service_account=settings.training_service_account,
                secret_name=settings.platform_secret_name,
                cpu=settings.training_cpu,
                memory=settings.training_memory,
                data_volume_claim=settings.data_volume_claim,
                data_dir=str(settings.data_dir),
            ),
            "model_serving": ServingEndpointResource(url=dg.EnvVar("MODEL_SERVING_URL")),
        }
    return common | {
        "training_launcher": TrainingLauncher(mode="subprocess"),
        "model_serving": ServingEndpointResource(url=settings.serving_url),
    }


@dg.definitions
def ml_resources() -> dg.Definitions:
    return dg.Definitions(resources=ml_resources_for(get_settings().deployment))
