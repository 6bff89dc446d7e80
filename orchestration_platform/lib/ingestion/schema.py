"""What a CSV dataset's columns are, as declared in YAML: names, types, aliases, date rules, key and
duplicate policy. Plain dataclasses with no heavy imports, so that loading the definitions (which builds
one of these per declared dataset) never imports numpy, pyarrow or pandas; `cleaning.py` does the work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestration_platform.lib.ingestion.csv_layout import Dialect

COLUMN_TYPES = ("integer", "float", "numeric", "text", "boolean", "date", "timestamp")
DUPLICATE_POLICIES = ("drop_exact", "keep_last", "fail")
DROP_REASONS = ("malformed_row", "missing_required", "bad_number", "bad_date", "bad_boolean", "duplicate")
NULL_TOKENS = ("", "na", "n/a", "null", "none", "nan", "-")


@dataclass(frozen=True)
class DateRules:
    """How a date/timestamp column is read (from the YAML)."""

    formats: tuple[str, ...] | None = None  # None: auto
    day_first: bool = False
    year_pivot: int = 70  # two-digit years below it are 20yy, the others 19yy
    timezone: str = "UTC"  # of naive values


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # one of COLUMN_TYPES (`int` is read as `integer`)
    required: bool = True
    aliases: tuple[str, ...] = ()
    null_tokens: tuple[str, ...] | None = None  # None: NULL_TOKENS
    dates: DateRules = field(default_factory=DateRules)

    @property
    def type(self) -> str:
        return "integer" if self.kind == "int" else self.kind


@dataclass(frozen=True)
class CsvSchema:
    """The columns a dataset carries; `key` identifies a row (unique per partition)."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] | str | None = None
    dialect: Dialect = field(default_factory=Dialect)
    duplicates: str = "drop_exact"
    keep_last_by: str | None = None
    allow_header_only: bool = False

    @property
    def key_columns(self) -> tuple[str, ...]:
        return (self.key,) if isinstance(self.key, str) else tuple(self.key or ())

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


DAILY_CASES = CsvSchema(
    name="daily_cases",
    columns=(
        Column("report_id", "integer"),
        Column("region", "text"),
        Column("reported_at", "timestamp"),
        Column("confirmed_cases", "integer"),
        Column("deaths", "integer", required=False),
        Column("notes", "text", required=False),
    ),
    key="report_id",
    dialect=Dialect(delimiter=",", encoding="utf-8"),
)
