"""The landing-zone sensor: a CSV dropped into the landing zone is ingested by exactly one run.

The file's name says which dataset and partition it fills, through each dataset's
`source.landing_pattern` (`daily_cases_{date}.csv`, `jh_daily_{date:%m-%d-%Y}.csv`); the run fills
that partition of the dataset's job, reading the dropped file instead of the URL template. The cursor
records each ingested file version, so nothing runs twice and nothing is missed; the run key is the
file version too, so Dagster itself refuses a duplicate. See `lib.ingestion.landing_zone` for what
counts as ready (settled, not partial) and what is rejected (symlinks, outside the zone, unreadable).
"""

import datetime as dt
import json
from typing import Any

import dagster as dg

from orchestration_platform.defs.ingestion.dataset_assets import RawFileConfig, raw_op_name
from orchestration_platform.defs.ingestion.files import IngestionFilesResource
from orchestration_platform.lib.ingestion.dataset import DatasetSpec, partition_from_file_name

MAX_RUNS_PER_TICK = 100  # more files wait in the zone for the next tick; the cursor keeps their place
SETTLE_SECONDS = 2.0


def _classifier(specs: list[DatasetSpec]):
    patterns = ", ".join(s.landing_pattern for s in specs)

    def classify(name: str) -> tuple[str, str] | str:
        for spec in specs:  # the patterns were checked to be distinct at load
            key = partition_from_file_name(spec.landing_pattern, name, spec.partitions.cadence)
            if key is None:
                continue
            if key.startswith("invalid:"):
                return f"names day {key.removeprefix('invalid:')!r}, which is not a date"
            return spec.name, key
        return f"has no day in its name matching a dataset's landing pattern ({patterns})"

    return classify


def _partition_problem(spec: DatasetSpec, partitions: dg.TimeWindowPartitionsDefinition, key: str) -> str | None:
    first = partitions.start
    now = dt.datetime.now(dt.UTC)
    last = min(now, partitions.end) if partitions.end else now
    try:
        moment = partitions.time_window_for_partition_key(key).start
    except Exception:
        return f"names partition {key!r}, which {spec.name} does not have"
    if not first <= moment <= last:
        return f"names day {key}, outside the ingested days {first.date()} to {last.date()}"
    return None


def build_landing_zone_sensor(specs: list[DatasetSpec], jobs: dict[str, Any],
                              partitions: dict[str, dg.TimeWindowPartitionsDefinition],
                              name: str = "landing_zone_sensor") -> dg.SensorDefinition:
    classify = _classifier(specs)
    by_name = {s.name: s for s in specs}
    examples = ", ".join(s.landing_pattern for s in specs)

    @dg.sensor(
        name=name,
        jobs=list(jobs.values()),
        minimum_interval_seconds=5,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Starts one ingestion run per CSV file dropped into the landing zone, named like {examples}.",
    )
    def landing_zone_sensor(context: dg.SensorEvaluationContext,
                            ingestion_files: IngestionFilesResource) -> dg.SensorResult | dg.SkipReason:
        from orchestration_platform.lib.ingestion.landing_zone import scan_landing_zone

        zone = ingestion_files.landing_path()
        state = json.loads(context.cursor) if context.cursor else {}
        seen: dict[str, str] = state.get("seen", {})
        reported: dict[str, str] = state.get("rejected", {})
        scan = scan_landing_zone(zone, seen=seen, previous_waiting=state.get("waiting", {}),
                                 settle_s=SETTLE_SECONDS, classify=classify)
        rejected = dict(scan.rejected)
        run_requests, waiting = [], dict(scan.waiting)
        for landed in scan.ready:
            spec = by_name[landed.dataset]
            problem = _partition_problem(spec, partitions[spec.name], landed.day)
            if problem:
                rejected[landed.relative] = problem
                continue
            if len(run_requests) >= MAX_RUNS_PER_TICK:
                waiting[landed.relative] = landed.version  # settled: the next tick takes it at once
                continue
            run_requests.append(dg.RunRequest(
                run_key=f"landed:{landed.relative}:{landed.version}",
                job_name=jobs[spec.name].name,
                partition_key=landed.day,
                run_config=dg.RunConfig(ops={raw_op_name(spec.name): RawFileConfig(landed_file=str(landed.path))}),
                tags={"ingestion/landed_file": landed.relative, "ingestion/dataset": spec.name},
            ))
            seen[landed.relative] = landed.version

        for rel, why in sorted(rejected.items()):
            if reported.get(rel) != why:
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

    return landing_zone_sensor
