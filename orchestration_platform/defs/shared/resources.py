"""Resources that more than one domain uses, bound here once per deployment (`DAGSTER_DEPLOYMENT`).

Domain resources are bound beside their domain: `defs/ingestion/resources.py` (the warehouse) and
`defs/ml/resources.py` (Kafka, the model registry, training, serving). Secrets are always
`dg.EnvVar`s, so their values never show in the UI.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from orchestration_platform.defs.shared.alerts import AlertWebhookResource
from orchestration_platform.defs.shared.postgres import PostgresResource
from orchestration_platform.settings import Deployment, get_settings


def shared_resources_for(deployment: Deployment) -> dict[str, Any]:
    """PostgreSQL (API tables, events, features, registry) and the alerts webhook; the same in every deployment."""
    del deployment  # both are environment references everywhere; the values differ per deployment
    alerts = (
        AlertWebhookResource(url=dg.EnvVar("ALERT_WEBHOOK_URL"))
        if os.environ.get("ALERT_WEBHOOK_URL")
        else AlertWebhookResource()
    )
    return {"postgres": PostgresResource(url=dg.EnvVar("POSTGRES_URL")), "alert_webhook": alerts}


@dg.definitions
def shared_resources() -> dg.Definitions:
    return dg.Definitions(resources=shared_resources_for(get_settings().deployment))
