"""A declared CSV dataset (what the YAML says), validated, plus the pure helpers the pipeline needs:
the source URL for a partition, the partition a landed file name stands for, the publishing delay.

`dataset_from_config(dict)` turns one YAML entry into a `DatasetSpec` or raises `DatasetConfigError`
naming the dataset, the field, the value and the fix. No Dagster import here.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
import string
from dataclasses import dataclass, field

from orchestration_platform.lib.ingestion.schema import (
    CsvSchema,
)

CADENCES = ("daily", "hourly", "weekly", "monthly")
KEY_FORMATS = {"daily": "%Y-%m-%d", "hourly": "%Y-%m-%d-%H:%M", "weekly": "%Y-%m-%d", "monthly": "%Y-%m-%d"}
SAFE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
DELAY = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m(?:in)?)?\s*$")
# strftime directives a file-name pattern may use, and what they match
DIRECTIVES = {"Y": r"\d{4}", "y": r"\d{2}", "m": r"\d{1,2}", "d": r"\d{1,2}", "H": r"\d{1,2}", "M": r"\d{2}",
              "j": r"\d{3}", "b": r"[A-Za-z]{3}", "B": r"[A-Za-z]+", "V": r"\d{2}", "G": r"\d{4}", "u": r"\d"}


class DatasetConfigError(ValueError):
    """A dataset declaration Dagster cannot load; the message names dataset, field, value and fix."""


@dataclass(frozen=True)
class Partitioning:
    cadence: str = "daily"
    start: str = "2026-01-01"
    end: str | None = None
    timezone: str = "UTC"
    publish_delay: str = "0h"

    def delay(self) -> dt.timedelta:
        days, hours, minutes = (int(g or 0) for g in DELAY.match(self.publish_delay).groups())  # validated
        return dt.timedelta(days=days, hours=hours, minutes=minutes)


@dataclass(frozen=True)
class Quality:
    max_drop_rate: float = 1.0
    row_count_band: tuple[float, float] = (0.5, 2.0)
    row_count_history: int = 7
    freshness_hours: float | None = None


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    schema: CsvSchema
    url_template: str
    url_template_env: str | None = None
    auth_header: str | None = None
    auth_env: str | None = None
    landing_pattern: str = "*{date}*.csv"
    partitions: Partitioning = field(default_factory=Partitioning)
    quality: Quality = field(default_factory=Quality)
    owners: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def table(self) -> str:
        return self.name

    def url_for(self, partition_key: str) -> str:
        """The source URL of one partition (the env override, if set, is read now: at run time)."""
        template = (os.environ.get(self.url_template_env, "").strip() if self.url_template_env else "")
        return format_url(template or self.url_template, partition_key, self.partitions.cadence)

    def auth_headers(self) -> dict[str, str]:
        """The auth header read from its environment variable (never logged); {} when none is declared."""
        if not self.auth_header:
            return {}
        value = os.environ.get(self.auth_env or "", "")
        if not value:
            raise DatasetConfigError(
                f"dataset {self.name!r}: source.auth_env={self.auth_env!r} is not set; export it with the "
                f"value of the {self.auth_header} header (it is never logged)"
            )
        return {self.auth_header: value}


class PartitionTime(dt.datetime):
    """A partition's start; `{date}` without a format gives the partition key (`2026-01-31`)."""

    key: str = ""

    def __format__(self, spec: str) -> str:
        return self.key if not spec else super().__format__(spec)


def partition_time(partition_key: str, cadence: str = "daily") -> PartitionTime:
    parsed = dt.datetime.strptime(partition_key, KEY_FORMATS[cadence])
    moment = PartitionTime(parsed.year, parsed.month, parsed.day, parsed.hour, parsed.minute)
    moment.key = partition_key
    return moment


def format_url(template: str, partition_key: str, cadence: str = "daily") -> str:
    return template.format(date=partition_time(partition_key, cadence))


@functools.lru_cache(maxsize=1024)  # every pattern is tried against every other at load, and per landed file
def _pattern_regex(pattern: str) -> tuple[re.Pattern, str]:
    """A landing file-name pattern (`*` = anything, `{date:FMT}`) as a regex, and the date format."""
    parts, date_format = [], None
    for literal, name, spec, _ in string.Formatter().parse(pattern):
        parts.append(".*".join(re.escape(piece) for piece in literal.split("*")))
        if name is None:
            continue
        date_format = spec or "%Y-%m-%d"
        regex = re.sub(r"%(.)", lambda m: DIRECTIVES.get(m.group(1), re.escape(m.group(0))), re.escape(date_format)
                       .replace(r"\%", "%"))
        parts.append(f"(?P<date>{regex})")
    return re.compile("^" + "".join(parts) + "$", re.IGNORECASE), date_format or ""


def partition_from_file_name(pattern: str, name: str, cadence: str = "daily") -> str | None:
    """The partition key a landed file named `name` fills, or None when the name does not fit `pattern`."""
    regex, date_format = _pattern_regex(pattern)
    match = regex.match(name)
    if match is None:
        return None
    try:
        moment = dt.datetime.strptime(match.group("date"), date_format)
    except ValueError:
        return "invalid:" + match.group("date")
    return moment.strftime(KEY_FORMATS[cadence])


def example_file_name(pattern: str) -> str:
    return pattern.replace("*", "").format(date=partition_time("2026-01-31", "daily"))
