"""Every resource key, bound in this one place, per deployment (`DAGSTER_DEPLOYMENT`).

`local` and `test` run on the machine (embedded or test-session services); `prod` runs on
Kubernetes with external PostgreSQL and Kafka. Secrets are always `dg.EnvVar`s, so their
values never show in the UI.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from orchestration_platform.defs.shared.alerts import AlertWebhookResource
from orchestration_platform.defs.shared.kafka import KafkaResource
from orchestration_platform.defs.shared.ml_registry import ModelRegistryResource
from orchestration_platform.defs.shared.postgres import PostgresResource
from orchestration_platform.defs.shared.serving_client import ServingEndpointResource
from orchestration_platform.defs.shared.training_launcher import TrainingLauncher
from orchestration_platform.defs.shared.warehouse import WarehouseResource
from orchestration_platform.settings import Deployment, get_settings


def resources_for(deployment: Deployment) -> dict[str, Any]:
    settings = get_settings()
    shared: dict[str, Any] = {
        "postgres": PostgresResource(url=dg.EnvVar("POSTGRES_URL")),
    }
    per_deployment: dict[Deployment, dict[str, Any]] = {
        # local/test read INGESTION_WAREHOUSE_URL (default SQLite under PLATFORM_DATA_DIR) at run time
        "local": {"warehouse": WarehouseResource()},
        "test": {"warehouse": WarehouseResource()},
        "prod": {"warehouse": WarehouseResource(url=dg.EnvVar("INGESTION_WAREHOUSE_URL"))},
    }
    del settings
    return {**shared, **per_deployment[deployment], **_ml_resources(deployment)}


def _ml_resources(deployment: Deployment) -> dict[str, Any]:
    """Streaming ML: Kafka, the MLflow registry, training (Pipes subprocess or Kubernetes Job), serving, alerts."""
    settings = get_settings()
    registry = ModelRegistryResource(
        postgres_url=dg.EnvVar("POSTGRES_URL"), artifact_root=settings.mlflow_artifact_root
    )
    alerts = (
        AlertWebhookResource(url=dg.EnvVar("ALERT_WEBHOOK_URL"))
        if os.environ.get("ALERT_WEBHOOK_URL")
        else AlertWebhookResource()
    )
    common = {
        "kafka": KafkaResource(bootstrap_servers=dg.EnvVar("KAFKA_BOOTSTRAP_SERVERS")),
        "model_registry": registry,
        "alert_webhook": alerts,
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
def shared_resources() -> dg.Definitions:
    return dg.Definitions(resources=resources_for(get_settings().deployment))
