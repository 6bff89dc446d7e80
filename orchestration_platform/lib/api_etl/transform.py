"""Fit extracted records to an endpoint's declared columns and types.

A record that does not fit (wrong type, missing primary key, not an object) becomes a reject
with the reason and the raw record; the others become rows in declared column order. A
sample of records is also compared with the declaration to spot schema drift (a declared
column the source no longer sends, fields it newly sends).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from psycopg.types.json import Jsonb

from orchestration_platform.lib.api_etl.endpoint_config import EndpointConfig

DRIFT_SAMPLE = 1000


class RecordError(ValueError):
    """This value cannot go into its column; the message is the reject reason."""


@dataclass
class Reject:
    reason: str
    raw: Any


@dataclass
class TransformResult:
    """Rows in declared column order (a list, or a stream that fills `rejects` and `row_count` as
    it is consumed), plus the drift seen in a sample of the records."""

    rows: Iterable[tuple[Any, ...]]
    rejects: list[Reject]
    row_count: int = 0
    missing_columns: list[str] = field(default_factory=list)  # declared, absent from every sampled record
    unexpected_fields: list[str] = field(default_factory=list)  # sent by the source, not declared
    sampled: int = 0

    @property
    def reject_rate(self) -> float:
        total = self.row_count + len(self.rejects)
        return len(self.rejects) / total if total else 0.0


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _to_integer(value: Any) -> int:
    kind = type(value)
    if kind is int:
        return value
    if kind is float and value.is_integer():
        return int(value)
    if kind is str and value.strip().lstrip("+-").isdigit():
        return int(value)
    raise RecordError(f"{_describe(value)} is not an integer")


def _to_float(value: Any) -> float:
    kind = type(value)
    if kind is float or kind is int:
        result = float(value)
    elif kind is str:
        try:
            result = float(value)
        except ValueError:
            raise RecordError(f"{_describe(value)} is not a number") from None
    else:
        raise RecordError(f"{_describe(value)} is not a number")
    if not math.isfinite(result):
        raise RecordError(f"{_describe(value)} is not a finite number")
    return result


def _to_numeric(value: Any) -> Decimal:
    if type(value) is bool or not isinstance(value, int | float | str):
        raise RecordError(f"{_describe(value)} is not a number")
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise RecordError(f"{_describe(value)} is not a number") from None
    if not result.is_finite():
        raise RecordError(f"{_describe(value)} is not a finite number")
    return result


def _to_text(value: Any) -> str:
    kind = type(value)
    if kind is str:
        if "\x00" in value:
            raise RecordError("text contains a NUL character, which PostgreSQL cannot store")
        return value
    if kind in (int, float, bool):
        return str(value)
    raise RecordError(f"{_describe(value)} is a {kind.__name__}, not text")


def _to_boolean(value: Any) -> bool:
    if type(value) is bool:
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise RecordError(f"{_describe(value)} is not a boolean")


def _to_timestamp(value: Any) -> datetime:
    if type(value) is str:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise RecordError(f"{_describe(value)} is not an ISO-8601 timestamp") from None
        # A timestamp without offset is taken as UTC, the platform's one time zone.
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if type(value) in (int, float) and math.isfinite(value):
        return datetime.fromtimestamp(value, tz=UTC)
    raise RecordError(f"{_describe(value)} is not a timestamp")


def _to_date(value: Any) -> date:
    if type(value) is str:
        try:
            return date.fromisoformat(value[:10]) if len(value) >= 10 else date.fromisoformat(value)
        except ValueError:
            raise RecordError(f"{_describe(value)} is not an ISO-8601 date") from None
    raise RecordError(f"{_describe(value)} is not a date")


def _to_json(value: Any) -> Jsonb:
    return Jsonb(value)


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "integer": _to_integer,
    "float": _to_float,
    "numeric": _to_numeric,
    "text": _to_text,
    "boolean": _to_boolean,
    "timestamp": _to_timestamp,
    "date": _to_date,
    "json": _to_json,
}


def _column_plan(endpoint: EndpointConfig) -> list[tuple[str, Callable[[Any], Any], bool]]:
    keys = set(endpoint.primary_key)
    return [(name, CONVERTERS[kind], name in keys) for name, kind in endpoint.columns.items()]


def _fit(endpoint: EndpointConfig, records: Iterable[Any], result: TransformResult) -> Iterator[tuple[Any, ...]]:
    plan = _column_plan(endpoint)
    rejects = result.rejects
    count = 0
    try:
        for record in records:
            if type(record) is not dict:
                rejects.append(Reject(f"record is a {type(record).__name__}, not a JSON object", record))
                continue
            values = []
            try:
                for name, convert, is_key in plan:
                    value = record.get(name)
                    if value is None:
                        if is_key:
                            raise RecordError(f"primary key column {name!r} is missing or null")
                        values.append(None)
                        continue
                    try:
                        values.append(convert(value))
                    except RecordError as error:
                        raise RecordError(f"column {name!r}: {error}") from None
            except RecordError as error:
                rejects.append(Reject(str(error), record))
                continue
            count += 1
            yield tuple(values)
    finally:
        result.row_count = count


def stream_transform(endpoint: EndpointConfig, records: list[Any]) -> TransformResult:
    """Like `transform_records`, but rows are produced while they are consumed (e.g. by COPY), so
    fitting records and loading them overlap; `rejects` and `row_count` are final once consumed."""
    result = TransformResult(rows=[], rejects=[])
    _detect_drift(endpoint, records, result)
    result.rows = _fit(endpoint, records, result)
    return result


def transform_records(endpoint: EndpointConfig, records: list[Any]) -> TransformResult:
    """Rows in declared column order, rejects with reasons, and the drift seen in a sample."""
    result = stream_transform(endpoint, records)
    result.rows = list(result.rows)
    return result


def _detect_drift(endpoint: EndpointConfig, records: list[Any], result: TransformResult) -> None:
    step = max(1, len(records) // DRIFT_SAMPLE)
    sample = [r for r in records[::step] if type(r) is dict]
    if not sample:
        return
    seen: set[str] = set()
    for record in sample:
        seen.update(record)
    result.sampled = len(sample)
    result.missing_columns = [c for c in endpoint.columns if c not in seen]
    result.unexpected_fields = sorted(seen - set(endpoint.columns))
