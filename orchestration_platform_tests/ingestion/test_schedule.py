"""The daily schedule asks for yesterday's partition of the ingestion job."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from orchestration_platform_tests.ingestion.conftest import INGESTION

(daily_cases_schedule,) = [s for s in INGESTION.schedules if s.name == "daily_cases_schedule"]


def test_the_schedule_runs_yesterday_at_half_past_one_utc() -> None:
    assert daily_cases_schedule.cron_schedule == "30 1 * * *"
    assert daily_cases_schedule.job_name == "daily_cases_ingestion"
    tick = dt.datetime(2026, 3, 15, 1, 30, tzinfo=dt.UTC)
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(instance=instance, scheduled_execution_time=tick) as context,
    ):
        (request,) = daily_cases_schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-03-14"
