"""API endpoints as a Dagster Component: the YAML (`defs/api_etl/endpoints/defs.yaml`) says which JSON APIs
to load, this class says how.

Each endpoint becomes an asset `["api", <name>]` with five blocking checks and a PostgreSQL table
`api.<name>`; all selected endpoints are extracted concurrently in one step (not one process each).
Each derived table under `tables:` becomes an asset `["api", <name>]` built by SQL and started by the
automation sensor under its trigger rule (`all_success` / `one_success`).

```yaml
type: orchestration_platform.components.api_endpoints.ApiEndpoints
attributes:
  endpoints_file: "{{ env('API_ENDPOINTS_CONFIG', '') }}"  # optional: another file replaces the lists below
  defaults: {concurrency: 32}
  endpoints:
    - {name: orders, url: /api/orders, primary_key: [order_id], columns: {order_id: integer}}
  tables:
    - {name: order_count, sql: "SELECT count(*) AS n FROM api.orders", upstreams: [orders]}
```
Invalid YAML fails the load naming the endpoint (or table), the field, the value and the fix.
"""

# No `from __future__ import annotations`: Dagster inspects the `context` annotations at runtime.

from pathlib import Path
from typing import Annotated, Any

import dagster as dg
from pydantic import Field

from orchestration_platform.components.templates import TEMPLATES_ONLY
from orchestration_platform.lib.api_etl.derived_tables import DerivedTableConfig, parse_derived_tables
from orchestration_platform.lib.api_etl.endpoint_config import (
    EndpointConfigError,
    EndpointsConfig,
    parse_endpoints_config,
    read_endpoints_yaml,
)


class ApiEndpoints(dg.Component, dg.Model, dg.Resolvable):
    """JSON API endpoints published to PostgreSQL (write-audit-publish), plus SQL tables derived from them."""

    endpoints_file: Annotated[str | None, TEMPLATES_ONLY] = Field(
        default=None,
        description="A YAML file with `defaults`, `endpoints` and `tables`; when set (non-empty) it replaces the "
        "inline lists. Relative paths are relative to this defs.yaml's folder. Per deployment: "
        "\"{{ env('API_ENDPOINTS_CONFIG', '') }}\".",
    )
    defaults: Annotated[dict[str, Any], TEMPLATES_ONLY] = Field(default_factory=dict, description="concurrency, rate limit, timeouts, retries")
    endpoints: Annotated[list[dict[str, Any]], TEMPLATES_ONLY] = Field(default_factory=list, description="one entry per endpoint (see README)")
    tables: Annotated[list[dict[str, Any]], TEMPLATES_ONLY] = Field(default_factory=list, description="SQL tables built from endpoint tables")
    owners: Annotated[list[str], TEMPLATES_ONLY] = Field(default_factory=list, description="owners of every endpoint and table: emails or "
                              "`team:<name>` (shown in the UI, used to route alerts)")
    schedule: Annotated[str | None, TEMPLATES_ONLY] = Field(default="0 * * * *", description="cron of the `api_etl_hourly` schedule "
                                 "(created stopped); null for none")

    def load_config(self, source: str) -> tuple[EndpointsConfig, list[DerivedTableConfig]]:
        """The validated endpoints and derived tables, from the inline lists or from `endpoints_file`."""
        raw: Any = {"defaults": self.defaults, "endpoints": self.endpoints, "tables": self.tables}
        if self.endpoints_file:
            path = Path(self.endpoints_file).expanduser()
            if not path.is_absolute():
                path = Path(source).parent / path
            raw, source = read_endpoints_yaml(path), f"endpoints file {str(path)!r}"
        if not isinstance(raw, dict):
            raise EndpointConfigError(f"{source}: expected a mapping with an `endpoints:` list (and optional "
                                      "`defaults:`, `tables:`)")
        raw = dict(raw)
        raw_tables = raw.pop("tables", None)
        if not raw.get("defaults"):
            raw.pop("defaults", None)
        config = parse_endpoints_config(raw, source=source)
        return config, parse_derived_tables(raw_tables, [e.name for e in config.endpoints], source)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from orchestration_platform.components.api_endpoint_assets import build_api_etl_defs

        config, tables = self.load_config(str(context.path / "defs.yaml"))
        return build_api_etl_defs(config, tables, schedule=self.schedule, owners=self.owners)
