"""The blocking checks every API endpoint's staged load must pass before it is published.

Kept apart from `api_publish` (which needs psycopg) so that the Dagster definitions can name the
checks without importing a database driver when the code location loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CHECK_SCHEMA = "schema_matches_declaration"
CHECK_KEY = "primary_key_unique_not_null"
CHECK_ROW_COUNT = "row_count_vs_previous_load"
CHECK_REJECTS = "reject_rate_within_threshold"
CHECK_NOT_EMPTY = "not_empty"
CHECK_NAMES = (CHECK_SCHEMA, CHECK_KEY, CHECK_ROW_COUNT, CHECK_REJECTS, CHECK_NOT_EMPTY)


@dataclass
class CheckOutcome:
    """One check's verdict on a staged load, with the figures that explain it."""

    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)
