"""The `warehouse` resource: where cleaned ingestion tables live (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from orchestration_platform.settings import get_settings


class WarehouseResource(dg.ConfigurableResource):
    """The ingestion warehouse. Unset `url` means INGESTION_WAREHOUSE_URL, read when a run uses it
    (default: `sqlite:///<PLATFORM_DATA_DIR>/warehouse.sqlite`). A PostgreSQL URL holds a password:
    bind it with `dg.EnvVar`; it is shown redacted everywhere (`display_url`)."""

    url: str | None = Field(
        default=None,
        description="sqlite:///path or postgresql://USER:PASSWORD@HOST:PORT/DB; unset = INGESTION_WAREHOUSE_URL",
    )

    def get_warehouse(self):
        """The pure-logic `Warehouse` (lib.warehouse_sink) for this URL; imported here to keep loading light."""
        from orchestration_platform.lib.ingestion.warehouse import Warehouse

        return Warehouse(self.url or get_settings().warehouse_url)
