"""Tables built by SQL from the published API tables (`api.<name>`), declared next to the endpoints.

Each derived table names the upstream tables it reads and its trigger rule: `all_success` rebuilds it
once every upstream has published since its last build (Airflow's ALL_SUCCESS), `one_success` as soon
as any one has (ONE_SUCCESS). A build replaces the whole table in one transaction, so readers see the
previous version or the new one, never a half-built table.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestration_platform.lib.api_etl.endpoint_config import IDENTIFIER, RESERVED_NAMES, EndpointConfigError

if TYPE_CHECKING:
    from orchestration_platform.lib.api_etl.publish import Connector

TRIGGER_RULES = ("all_success", "one_success")
PUBLISHED_SCHEMA = "api"


class DerivedTableConfig(BaseModel):
    """One table `api.<name>` built by `sql` from the tables of `upstreams` (endpoints or other derived tables)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    sql: str = Field(min_length=1, description="one SELECT statement; its result becomes api.<name>")
    upstreams: list[str] = Field(min_length=1)
    trigger: Literal["all_success", "one_success"] = "all_success"

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not IDENTIFIER.match(value):
            raise ValueError("is not a safe SQL identifier; fix: use 1-40 lowercase letters, digits and _, "
                             "starting with a letter")
        if value in RESERVED_NAMES:
            raise ValueError(f"is reserved for the platform's own tables; fix: choose another name (e.g. '{value}_report')")
        return value

    @field_validator("sql")
    @classmethod
    def _one_select(cls, value: str) -> str:
        statement = value.strip().rstrip(";").strip()
        if ";" in statement:
            raise ValueError("holds more than one statement; fix: write a single SELECT (the platform replaces the "
                             "table with its result)")
        if not re.match(r"^(select|with)\b", statement, re.IGNORECASE):
            raise ValueError("is not a SELECT; fix: write a single SELECT ... or WITH ... SELECT ... statement")
        return statement


def build_derived_table(connect: Connector, table: DerivedTableConfig) -> int:
    """Replace `api.<name>` with the result of its SQL in one transaction; returns its row count."""
    from psycopg import sql  # here: psycopg costs ~0.1 s on every load of the code location

    target = sql.SQL("{}.{}").format(sql.Identifier(PUBLISHED_SCHEMA), sql.Identifier(table.name))
    with connect() as conn, conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(PUBLISHED_SCHEMA)))
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
        conn.execute(sql.SQL("CREATE TABLE {} AS {}").format(target, sql.SQL(table.sql)))  # type: ignore[arg-type]
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(target)).fetchone()
    return int(row[0]) if row else 0


def parse_derived_tables(raw: object, endpoint_names: list[str], source: str) -> list[DerivedTableConfig]:
    """Validate the `tables:` list; every problem names the table, the field, the value and the fix."""
    from pydantic import ValidationError

    if raw is None:
        return []
    if not isinstance(raw, list):
        raise EndpointConfigError(f"{source} is invalid:\n  - field 'tables': expected a list of tables; fix: write "
                         "`tables:` followed by `- name: ...` entries (or remove it)")
    problems: list[str] = []
    tables: list[DerivedTableConfig] = []
    known = list(endpoint_names)
    for index, item in enumerate(raw, start=1):
        name = item.get("name") if isinstance(item, dict) else None
        where = f"table {name!r}" if name else f"table #{index}"
        try:
            table = DerivedTableConfig.model_validate(item)
        except ValidationError as error:
            for e in error.errors(include_url=False):
                field = ".".join(str(p) for p in e["loc"]) or "(whole entry)"
                message = e["msg"].removeprefix("Value error, ")
                shown = "" if e["type"] == "missing" or isinstance(e.get("input"), dict | list) else f": value {e.get('input')!r}"
                fix = {"missing": "; fix: add it", "extra_forbidden": "; fix: remove it or check its spelling "
                       "(name, description, sql, upstreams, trigger)",
                       "literal_error": f"; fix: use one of {', '.join(TRIGGER_RULES)}"}.get(e["type"], "")
                problems.append(f"{where}, field {field!r}{shown}: {message}{fix}")
            continue
        if table.name in known:
            problems.append(f"{where}, field 'name': value {table.name!r} is already an endpoint or table; "
                            "fix: give each table its own name")
        unknown = [u for u in table.upstreams if u not in known]
        if unknown:
            problems.append(f"{where}, field 'upstreams': value {unknown} not declared above; fix: use endpoints or "
                            f"tables declared before it ({', '.join(known)})")
        known.append(table.name)
        tables.append(table)
    if problems:
        raise EndpointConfigError(f"{source} is invalid:\n  - " + "\n  - ".join(problems))
    return tables
