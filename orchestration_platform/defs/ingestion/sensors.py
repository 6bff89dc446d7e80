"""The landing-zone sensor: a CSV dropped into INGESTION_LANDING_ZONE is ingested by exactly one run.

The file's name carries its day (`daily_cases_2026-01-31.csv`); the run fills that day's
partition of the ingestion job, reading the dropped file instead of the URL template. The cursor
records each ingested file version, so nothing runs twice and nothing is missed; the run key is
the file version too, so Dagster itself refuses a duplicate. See `lib.landing_zone` for what
counts as ready (settled, not partial) and what is rejected (symlinks, outside the zone, unreadable).
"""


import datetime as dt
import json

import dagster as dg

from orchestration_platform.defs.ingestion.assets import RAW_KEY
from orchestration_platform.defs.ingestion.jobs import daily_cases_ingestion
from orchestration_platform.defs.ingestion.partitions import daily_partitions
from orchestration_platform.settings import get_settings

MAX_RUNS_PER_TICK = 100  # more files wait in the zone for the next tick; the cursor keeps their place
SETTLE_SECONDS = 2.0
RAW_OP = "__".join(RAW_KEY.path)


def _partition_problem(day: str) -> str | None:
    try:
        date = dt.date.fromisoformat(day)
    except ValueError:
        return f"names day {day!r}, which is not a date"
    first = daily_partitions.start.date()
    today = dt.datetime.now(dt.UTC).date()
    if not first <= date <= today:
        return f"names day {day}, outside the ingested days {first} to {today}"
    return None


@dg.sensor(
    name="landing_zone_sensor",
    job=daily_cases_ingestion,
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts one ingestion run per CSV file dropped into INGESTION_LANDING_ZONE "
    "(named with its day, e.g. daily_cases_2026-01-31.csv).",
)
def landing_zone_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    from orchestration_platform.lib.ingestion.landing_zone import scan_landing_zone

    zone = get_settings().landing_zone
    state = json.loads(context.cursor) if context.cursor else {}
    seen: dict[str, str] = state.get("seen", {})
    reported: dict[str, str] = state.get("rejected", {})
    scan = scan_landing_zone(zone, seen=seen, previous_waiting=state.get("waiting", {}), settle_s=SETTLE_SECONDS)

    rejected = dict(scan.rejected)
    run_requests, waiting = [], dict(scan.waiting)
    for landed in scan.ready:
        problem = _partition_problem(landed.day)
        if problem:
            rejected[landed.relative] = problem
            continue
        if len(run_requests) >= MAX_RUNS_PER_TICK:
            waiting[landed.relative] = landed.version  # settled: the next tick takes it at once
            continue
        run_requests.append(dg.RunRequest(
            run_key=f"landed:{landed.relative}:{landed.version}",
            partition_key=landed.day,
            run_config={"ops": {RAW_OP: {"config": {"landed_file": str(landed.path)}}}},
            tags={"ingestion/landed_file": landed.relative},
        ))
        seen[landed.relative] = landed.version

    new_rejects = {rel: why for rel, why in rejected.items() if reported.get(rel) != why}
    for rel, why in sorted(new_rejects.items()):
        context.log.warning(f"landing zone {zone}: skipped {rel}: {why}")
    cursor = json.dumps({
        "seen": {rel: v for rel, v in seen.items() if rel in scan.present},  # forget files that left the zone
        "waiting": waiting,
        "rejected": rejected,
    }, sort_keys=True)
    if run_requests:
        return dg.SensorResult(run_requests=run_requests, cursor=cursor)
    context.update_cursor(cursor)
    parts = [f"no new settled CSV files in {zone}"]
    if waiting:
        parts.append(f"{len(waiting)} waiting to settle")
    if rejected:
        parts.append("skipped: " + "; ".join(f"{rel} {why}" for rel, why in sorted(rejected.items())[:10]))
    return dg.SkipReason(", ".join(parts))
