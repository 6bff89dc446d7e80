"""The daily partitions every ingestion asset shares, starting at INGESTION_START_DATE."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from orchestration_platform.settings import SettingsError, get_settings


def _start_date() -> str:
    value = get_settings().ingestion_start_date
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise SettingsError(
            f"INGESTION_START_DATE={value!r} is not a date: use YYYY-MM-DD, e.g. 2026-01-01"
        ) from None


daily_partitions = dg.DailyPartitionsDefinition(start_date=_start_date())
