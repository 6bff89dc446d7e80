"""The API ETL domain's resources, bound per deployment (`DAGSTER_DEPLOYMENT`).

The endpoints themselves are declared in `defs/api_etl/endpoints/defs.yaml` (a component instance);
their tables go to the shared `postgres` resource.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from orchestration_platform.defs.api_etl.sources import ApiSourcesResource
from orchestration_platform.settings import Deployment, get_settings


def api_etl_resources_for(deployment: Deployment) -> dict[str, Any]:
    """Relative endpoint URLs resolve against DEMO_SOURCES_URL (not a secret; its default when unset, so a
    production config with only absolute URLs needs nothing set)."""
    del deployment  # the same everywhere; the value differs per deployment
    return {"api_sources": ApiSourcesResource(base_url=get_settings().sources_url)}


@dg.definitions
def api_etl_resources() -> dg.Definitions:
    return dg.Definitions(resources=api_etl_resources_for(get_settings().deployment))
