"""The model-serving endpoint the deployment switches and verifies."""

from __future__ import annotations

import dagster as dg
from pydantic import Field


class ServingEndpointResource(dg.ConfigurableResource):
    """The serving app's base URL (MODEL_SERVING_URL) and how long a switch may take to show."""

    url: str = Field(description="e.g. http://orchestration-platform-serving:8080")
    verify_timeout_s: float = 20.0
