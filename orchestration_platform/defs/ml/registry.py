"""The model registry resource: MLflow with the platform's PostgreSQL as backend store."""

from __future__ import annotations

import dagster as dg
from pydantic import Field


class ModelRegistryResource(dg.ConfigurableResource):
    """MLflow model registry; `postgres_url` is the POSTGRES_URL secret (bind with `dg.EnvVar`)."""

    postgres_url: str = Field(description="the platform PostgreSQL that holds the registry tables")
    artifact_root: str = Field(description="where model files are stored (MLFLOW_ARTIFACT_ROOT)")
    model_name: str = "fraud_detector"

    def open(self):
        """A `lib.model_registry.ModelRegistry` (imports MLflow only when used)."""
        from orchestration_platform.lib.ml.model_registry import ModelRegistry

        return ModelRegistry(self.postgres_url, self.artifact_root, self.model_name)
