"""Read the endpoints config when the code location loads and build the API ETL definitions.

Invalid config fails the load with a message naming the endpoint, the field, the value and the fix.
"""

from __future__ import annotations

import dagster as dg

from orchestration_platform.defs.api_etl.assets import build_api_etl_defs
from orchestration_platform.lib.api_etl.endpoint_config import load_endpoints_config
from orchestration_platform.settings import get_settings


@dg.definitions
def api_etl_definitions() -> dg.Definitions:
    return build_api_etl_defs(load_endpoints_config(get_settings().api_endpoints_config))
