"""Fitting records to declared columns: what is coerced, what is rejected and why, and drift."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from orchestration_platform.lib.api_etl.endpoint_config import parse_endpoints_config
from orchestration_platform.lib.api_etl.transform import stream_transform, transform_records


def endpoint(**columns: str):
    return parse_endpoints_config({"endpoints": [{"name": "things", "url": "/x", "primary_key": ["id"],
                                                  "columns": {"id": "integer", **columns}}]}).endpoints[0]


@pytest.mark.parametrize("kind, raw, expected", [
    ("integer", "42", 42), ("integer", 7.0, 7),
    ("float", "2.5", 2.5), ("float", 3, 3.0),
    ("numeric", "19.99", Decimal("19.99")), ("numeric", 0.1, Decimal("0.1")),
    ("text", "héllo", "héllo"), ("text", 12, "12"),
    ("boolean", "TRUE", True), ("boolean", False, False),
    ("timestamp", "2026-03-01T10:00:00Z", datetime(2026, 3, 1, 10, tzinfo=UTC)),
    ("timestamp", "2026-03-01T10:00:00", datetime(2026, 3, 1, 10, tzinfo=UTC)),  # no offset: UTC
    ("date", "2026-03-01", date(2026, 3, 1)),
])
def test_values_that_fit_are_coerced(kind: str, raw, expected):
    result = transform_records(endpoint(value=kind), [{"id": 1, "value": raw}])
    assert result.rows == [(1, expected)] and result.rejects == []


@pytest.mark.parametrize("kind, raw, reason", [
    ("integer", True, "True is not an integer"),
    ("integer", "1.5", "'1.5' is not an integer"),
    ("float", "nan", "'nan' is not a finite number"),
    ("float", [1], "[1] is not a number"),
    ("numeric", "n/a", "'n/a' is not a number"),
    ("text", {"a": 1}, "{'a': 1} is a dict, not text"),
    ("text", "a\x00b", "NUL character"),
    ("boolean", "yes", "'yes' is not a boolean"),
    ("timestamp", "yesterday", "'yesterday' is not an ISO-8601 timestamp"),
    ("date", 20260301, "20260301 is not a date"),
])
def test_values_that_do_not_fit_are_rejected_with_the_reason_and_raw_record(kind: str, raw, reason: str):
    record = {"id": 1, "value": raw}
    result = transform_records(endpoint(value=kind), [record])
    assert result.rows == []
    [reject] = result.rejects
    assert reject.reason.startswith("column 'value': ") and reason in reject.reason
    assert reject.raw is record


def test_missing_primary_keys_and_non_objects_are_rejected_and_nulls_kept():
    result = transform_records(endpoint(note="text"), [{"note": "no id"}, ["a", "list"], {"id": 2}])
    assert [r.reason for r in result.rejects] == ["primary key column 'id' is missing or null",
                                                  "record is a list, not a JSON object"]
    assert result.rows == [(2, None)] and result.reject_rate == pytest.approx(2 / 3)


def test_drift_names_missing_declared_columns_and_new_fields():
    records = [{"id": n, "email_address": "x@example.com", "tier": "gold"} for n in range(5000)]
    result = transform_records(endpoint(email="text", tier="text"), records)
    assert result.missing_columns == ["email"] and result.unexpected_fields == ["email_address"]


def test_stream_fills_rejects_and_counts_as_it_is_consumed():
    result = stream_transform(endpoint(value="integer"), [{"id": 1, "value": 1}, {"id": 2, "value": "x"}])
    assert result.row_count == 0 and result.rejects == []
    assert list(result.rows) == [(1, 1)]
    assert result.row_count == 1 and len(result.rejects) == 1
