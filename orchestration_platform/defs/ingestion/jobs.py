"""The ingestion job (raw -> cleaned -> checks -> summary) and its daily schedule for yesterday."""

from __future__ import annotations

import dagster as dg

from orchestration_platform.defs.ingestion.partitions import daily_partitions

daily_cases_ingestion = dg.define_asset_job(
    "daily_cases_ingestion",
    selection=dg.AssetSelection.groups("ingestion"),
    partitions_def=daily_partitions,
    # the steps run one after another anyway: one process saves a process start per step
    executor_def=dg.in_process_executor,
    description="Download, clean, check and summarise the daily case reports for one day (or a range).",
)

# A daily partitioned job's schedule targets the last complete day: at 01:30 UTC it runs yesterday.
daily_cases_schedule = dg.build_schedule_from_partitioned_job(
    daily_cases_ingestion,
    name="daily_cases_yesterday",
    hour_of_day=1,
    minute_of_hour=30,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 01:30 UTC: ingest yesterday's daily case reports.",
)
