"""The ingestion domain's resources, bound per deployment (`DAGSTER_DEPLOYMENT`)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from orchestration_platform.defs.ingestion.files import IngestionFilesResource
from orchestration_platform.defs.ingestion.warehouse import WarehouseResource
from orchestration_platform.settings import Deployment, get_settings


def ingestion_resources_for(deployment: Deployment) -> dict[str, Any]:
    """The warehouse and the data folders: local/test read INGESTION_WAREHOUSE_URL (default SQLite under
    PLATFORM_DATA_DIR), PLATFORM_DATA_DIR and INGESTION_LANDING_ZONE when a run uses them; prod binds them
    as environment references (the warehouse URL is a secret)."""
    if deployment == "prod":
        return {
            "warehouse": WarehouseResource(url=dg.EnvVar("INGESTION_WAREHOUSE_URL")),
            # the chart always sets PLATFORM_DATA_DIR; INGESTION_LANDING_ZONE is optional (default <data>/landing)
            "ingestion_files": IngestionFilesResource(data_dir=dg.EnvVar("PLATFORM_DATA_DIR")),
        }
    return {"warehouse": WarehouseResource(), "ingestion_files": IngestionFilesResource()}


@dg.definitions
def ingestion_resources() -> dg.Definitions:
    return dg.Definitions(resources=ingestion_resources_for(get_settings().deployment))
