"""The ingestion domain's resources, bound per deployment (`DAGSTER_DEPLOYMENT`)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from orchestration_platform.defs.ingestion.warehouse import WarehouseResource
from orchestration_platform.settings import Deployment, get_settings


def ingestion_resources_for(deployment: Deployment) -> dict[str, Any]:
    """The warehouse: local/test read INGESTION_WAREHOUSE_URL (default SQLite under PLATFORM_DATA_DIR) at
    run time; prod binds it as a secret environment reference."""
    if deployment == "prod":
        return {"warehouse": WarehouseResource(url=dg.EnvVar("INGESTION_WAREHOUSE_URL"))}
    return {"warehouse": WarehouseResource()}


@dg.definitions
def ingestion_resources() -> dg.Definitions:
    return dg.Definitions(resources=ingestion_resources_for(get_settings().deployment))
