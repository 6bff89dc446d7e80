"""Validate one dataset declaration (a dict, as the YAML gives it) into a `DatasetSpec`.

Every error names the dataset, the field, the value and the fix, and fails the code location's load.
"""

from __future__ import annotations

import datetime as dt
import re
import string
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from orchestration_platform.lib.ingestion.csv_layout import DELIMITERS, Dialect
from orchestration_platform.lib.ingestion.dataset import (
    CADENCES,
    DELAY,
    SAFE_NAME,
    DatasetConfigError,
    DatasetSpec,
    Partitioning,
    Quality,
    partition_from_file_name,
)
from orchestration_platform.lib.ingestion.schema import (
    COLUMN_TYPES,
    DUPLICATE_POLICIES,
    Column,
    CsvSchema,
    DateRules,
)

RESERVED = {"row_key", "partition_date", "partition_key"}
HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class _Where:
    def __init__(self, dataset: str) -> None:
        self.dataset = dataset

    def fail(self, field: str, value: Any, fix: str) -> DatasetConfigError:
        return DatasetConfigError(f"dataset {self.dataset!r}: {field}={value!r} {fix}")


def _bool_or_auto(where: _Where, field: str, value: Any) -> bool | None:
    if value in (None, "auto"):
        return None
    if isinstance(value, bool):
        return value
    raise where.fail(field, value, "is not true, false or auto: use one of those")


def _check_template(where: _Where, field: str, template: str, cadence: str) -> None:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise where.fail(field, template, f"is not a valid template ({error}); write the partition time as "
                                          "{date} or {date:%m-%d-%Y}") from None
    if names - {"date"}:
        raise where.fail(field, template, f"uses {sorted(names - {'date'})}; the only placeholder is {{date}} "
                                          "(e.g. {date:%Y/%m/%d})")
    if "date" not in names:
        raise where.fail(field, template, "has no {date} placeholder for the partition: add one, e.g. "
                                          "{date:%m-%d-%Y}")
    start = "2026-01-31-00:00" if cadence == "hourly" else "2026-01-31"
    from orchestration_platform.lib.ingestion.dataset import format_url

    try:
        format_url(template, start, cadence)
    except ValueError as error:
        raise where.fail(field, template, f"cannot be formatted ({error}); use strftime codes such as "
                                          "{date:%Y-%m-%d}") from None


def _partitions(where: _Where, raw: dict) -> Partitioning:
    cadence = raw.get("cadence", "daily")
    if cadence not in CADENCES:
        raise where.fail("partitions.cadence", cadence, f"is not a cadence: use one of {', '.join(CADENCES)}")
    for field in ("start", "end"):
        value = raw.get(field)
        if value is None and field == "end":
            continue
        try:
            dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise where.fail(f"partitions.{field}", value, "is not a date: use YYYY-MM-DD (hourly: "
                                                            "YYYY-MM-DD HH:MM)") from None
    if raw.get("end") and str(raw["end"]) <= str(raw["start"]):
        raise where.fail("partitions.end", raw["end"], f"is not after start {raw['start']}: move it later")
    try:
        ZoneInfo(raw.get("timezone", "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        raise where.fail("partitions.timezone", raw.get("timezone"), "is not a time zone: use an IANA name "
                                                                      "such as UTC or Europe/Berlin") from None
    delay = str(raw.get("publish_delay", "0h"))
    if not DELAY.match(delay) or not delay.strip():
        raise where.fail("partitions.publish_delay", delay, "is not a delay: write it like 1h30m, 6h or 2d")
    part = Partitioning(cadence, str(raw["start"]), str(raw["end"]) if raw.get("end") else None,
                        raw.get("timezone", "UTC"), delay)
    limit = {"hourly": dt.timedelta(hours=1), "daily": dt.timedelta(days=1), "weekly": dt.timedelta(days=7),
             "monthly": dt.timedelta(days=28)}[cadence]
    if part.delay() >= limit:
        raise where.fail("partitions.publish_delay", delay, f"is longer than one {cadence} partition; "
                                                            f"keep it under {limit}")
    return part


def _dialect(where: _Where, raw: dict) -> Dialect:
    delimiter = raw.get("delimiter", "auto")
    names = {"comma": ",", "semicolon": ";", "tab": "\t", "pipe": "|", "\\t": "\t"}
    delimiter = names.get(delimiter, delimiter)
    if delimiter != "auto" and delimiter not in DELIMITERS:
        raise where.fail("dialect.delimiter", raw.get("delimiter"), "is not a delimiter: use auto, comma, "
                                                                     "semicolon, tab or pipe")
    encoding = raw.get("encoding", "auto")
    if encoding != "auto":
        try:
            "".encode(encoding)
        except LookupError:
            raise where.fail("dialect.encoding", encoding, "is not an encoding: use auto, utf-8, utf-8-sig, "
                                                           "latin-1 or cp1252") from None
    quote = raw.get("quote", '"')
    if not isinstance(quote, str) or len(quote) != 1:
        raise where.fail("dialect.quote", quote, "must be one character, e.g. '\"'")
    for field in ("header_row", "skip_rows"):
        value = raw.get(field, 1 if field == "header_row" else 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if field == "header_row" else 0):
            raise where.fail(f"dialect.{field}", value, "must be a whole number "
                                                        f"({'1 = first line' if field == 'header_row' else '0 or more'})")
    return Dialect(None if delimiter == "auto" else delimiter, quote, None if encoding == "auto" else encoding,
                   raw.get("header_row", 1), raw.get("skip_rows", 0),
                   _bool_or_auto(where, "dialect.decimal_comma", raw.get("decimal_comma")))


def _column(where: _Where, raw: dict, index: int) -> Column:
    name = raw.get("name")
    label = f"columns[{index}]" + (f" ({name})" if name else "")
    if not isinstance(name, str) or not SAFE_NAME.match(name) or name in RESERVED:
        raise where.fail(f"{label}.name", name, "is not a column name: use lower-case letters, digits and _ "
                                                "(starting with a letter; not row_key/partition_date)")
    kind = raw.get("type", "text")
    if kind not in COLUMN_TYPES:
        raise where.fail(f"{label}.type", kind, f"is not a type: use one of {', '.join(COLUMN_TYPES)}")
    formats = raw.get("formats", "auto")
    if formats != "auto":
        if isinstance(formats, str):
            formats = [formats]
        if kind not in ("date", "timestamp"):
            raise where.fail(f"{label}.formats", formats, f"only applies to date and timestamp columns; remove it "
                                                          f"or change type {kind!r}")
        for fmt in formats:
            if "%" not in str(fmt):
                raise where.fail(f"{label}.formats", fmt, "is not a strftime format: write e.g. '%m/%d/%Y %H:%M' "
                                                          "or use auto")
    zone = raw.get("timezone", "UTC")
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise where.fail(f"{label}.timezone", zone, "is not a time zone: use an IANA name such as UTC or "
                                                    "America/New_York") from None
    pivot = raw.get("year_pivot", 70)
    if not isinstance(pivot, int) or not 0 <= pivot <= 100:
        raise where.fail(f"{label}.year_pivot", pivot, "must be 0-100 (two-digit years below it are 20yy)")
    aliases = raw.get("aliases") or []
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise where.fail(f"{label}.aliases", aliases, "must be a list of header spellings, e.g. [Region_Name]")
    nulls = raw.get("null_tokens")
    return Column(name, kind, bool(raw.get("required", True)), tuple(aliases),
                  None if nulls is None else tuple(str(t) for t in nulls),
                  DateRules(None if formats == "auto" else tuple(formats), bool(raw.get("day_first", False)),
                            pivot, zone))


def _quality(where: _Where, raw: dict) -> Quality:
    rate = raw.get("max_drop_rate", 1.0)
    if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise where.fail("quality.max_drop_rate", rate, "must be a fraction from 0 to 1, e.g. 0.2")
    band = raw.get("row_count_band", [0.5, 2.0])
    if not (isinstance(band, list) and len(band) == 2 and all(isinstance(b, (int, float)) for b in band)
            and 0 <= band[0] < 1 < band[1]):
        raise where.fail("quality.row_count_band", band, "must be [low, high] with low < 1 < high, e.g. [0.5, 2]")
    fresh = raw.get("freshness_hours")
    if fresh is not None and (not isinstance(fresh, (int, float)) or fresh <= 0):
        raise where.fail("quality.freshness_hours", fresh, "must be a positive number of hours, e.g. 48")
    history = raw.get("row_count_history", 7)
    if not isinstance(history, int) or history < 3:
        raise where.fail("quality.row_count_history", history, "must be 3 or more partitions")
    return Quality(float(rate), (float(band[0]), float(band[1])), history, fresh)


def dataset_from_config(raw: dict[str, Any]) -> DatasetSpec:
    """The validated dataset; raises `DatasetConfigError` naming dataset, field, value and fix."""
    name = raw.get("name")
    where = _Where(str(name))
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise where.fail("name", name, "is not a safe SQL identifier: use lower-case letters, digits and _, "
                                       "starting with a letter (it names the table and the asset keys)")
    partitions = _partitions(where, raw.get("partitions") or {"start": "2026-01-01"})
    source = raw.get("source") or {}
    template = source.get("url_template")
    if not isinstance(template, str) or not template.strip():
        raise where.fail("source.url_template", template, "is missing: give the file's URL with the partition "
                                                          "as {date}, e.g. https://host/data/{date:%m-%d-%Y}.csv")
    _check_template(where, "source.url_template", template, partitions.cadence)
    scheme = template.split("://", 1)[0].lower() if "://" in template else ""
    if scheme not in ("http", "https", "file"):
        raise where.fail("source.url_template", template, "must start with http://, https:// or file://")
    for field in ("url_template_env", "auth_env"):
        value = source.get(field)
        if value is not None and not ENV_NAME.match(str(value)):
            raise where.fail(f"source.{field}", value, "is not an environment variable name (e.g. FEED_TOKEN)")
    header = source.get("auth_header")
    if header is not None and (not HEADER_NAME.match(str(header)) or not source.get("auth_env")):
        raise where.fail("source.auth_header", header, "needs a header name (e.g. Authorization) and auth_env "
                                                       "naming the environment variable holding its value")
    pattern = source.get("landing_pattern", f"{name}_{{date}}.csv")
    _check_template(where, "source.landing_pattern", pattern, "daily")
    if "/" in pattern:
        raise where.fail("source.landing_pattern", pattern, "is a file name pattern: remove the folder part")
    columns = raw.get("columns") or []
    if not columns:
        raise where.fail("columns", columns, "is empty: declare at least one column (name, type)")
    parsed = [_column(where, c, i) for i, c in enumerate(columns)]
    names = [c.name for c in parsed]
    if len(set(names)) != len(names):
        raise where.fail("columns", names, "repeats a name: each column once")
    key = raw.get("key") or []
    key = [key] if isinstance(key, str) else list(key)
    for k in key:
        if k not in names:
            raise where.fail("key", k, f"is not a declared column: use some of {', '.join(names)}")
    duplicates = raw.get("duplicates", "drop_exact")
    if duplicates not in DUPLICATE_POLICIES:
        raise where.fail("duplicates", duplicates, f"is not a policy: use one of {', '.join(DUPLICATE_POLICIES)}")
    keep_by = raw.get("keep_last_by")
    if duplicates in ("keep_last", "fail") and not key:
        raise where.fail("duplicates", duplicates, "needs a key: declare key: [column, ...]")
    if keep_by is not None and (keep_by not in names or duplicates != "keep_last"):
        raise where.fail("keep_last_by", keep_by, "must be a declared column and needs duplicates: keep_last")
    schema = CsvSchema(name, tuple(parsed), tuple(key) or None, _dialect(where, raw.get("dialect") or {}),
                       duplicates, keep_by, bool(raw.get("allow_header_only", False)))
    owners = raw.get("owners") or []
    for owner in owners:
        if not (isinstance(owner, str) and ("@" in owner or owner.startswith("team:"))):
            raise where.fail("owners", owner, "is not an owner: use an email address or team:name")
    tags = {str(k): str(v) for k, v in (raw.get("tags") or {}).items()}
    return DatasetSpec(
        name=name, description=str(raw.get("description") or f"The {name} CSV dataset."), schema=schema,
        url_template=template, url_template_env=source.get("url_template_env"),
        auth_header=header, auth_env=source.get("auth_env"), landing_pattern=pattern,
        partitions=partitions, quality=_quality(where, raw.get("quality") or {}), owners=tuple(owners), tags=tags,
    )


def check_distinct_patterns(specs: list[DatasetSpec]) -> None:
    """Two datasets may not claim the same landed file: each example name must fit one pattern only."""
    from orchestration_platform.lib.ingestion.dataset import example_file_name

    seen = {s.name for s in specs}
    if len(seen) != len(specs):
        dupes = sorted({s.name for s in specs if [t.name for t in specs].count(s.name) > 1})
        raise DatasetConfigError(f"dataset name {dupes[0]!r} is declared twice: give each dataset its own name")
    for spec in specs:
        example = example_file_name(spec.landing_pattern)
        others = [o.name for o in specs if o is not spec and partition_from_file_name(o.landing_pattern, example)]
        if others:
            raise DatasetConfigError(
                f"dataset {spec.name!r}: source.landing_pattern={spec.landing_pattern!r} also matches dataset(s) "
                f"{', '.join(others)} (e.g. {example!r}); give each dataset a distinct prefix such as "
                f"'{spec.name}_{{date}}.csv'"
            )
