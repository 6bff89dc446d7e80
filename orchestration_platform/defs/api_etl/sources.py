"""Where relative endpoint URLs (`/api/...`) point: the demo sources server locally, any base URL in production."""

from __future__ import annotations

import dagster as dg
from pydantic import Field


class ApiSourcesResource(dg.ConfigurableResource):
    """The base URL that endpoint URLs starting with `/` are resolved against (DEMO_SOURCES_URL)."""

    base_url: str = Field(description="e.g. http://127.0.0.1:8765; absolute endpoint URLs ignore it")
