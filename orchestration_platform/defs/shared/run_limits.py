"""Every job has a maximum run time, so a stuck run fails with a clear reason instead of holding a slot.

Each job carries the run tag `dagster/max_runtime` (seconds) from `max_runtime_tags(job_name)`.
Dagster's run monitoring (`run_monitoring: enabled` in dagster.yaml and in the Helm chart's instance
config) checks it every `poll_interval_seconds` and cancels a run that has been STARTED for longer,
marking it failed with "Exceeded maximum runtime of N seconds". Runs of no job (a materialization
started from the asset graph) get `run_monitoring.max_runtime_seconds` from dagster.yaml instead.

To raise the limit for one run, set the tag `dagster/max_runtime` in the Launchpad (run tags override
job tags); to change a default, change MAX_RUNTIME_S below (README "Limits").
"""

from __future__ import annotations

import dagster as dg

MINUTE = 60
HOUR = 60 * MINUTE

MAX_RUNTIME_S: dict[str, int] = {
    # every endpoint in one step; each request is itself bounded (deadline_s x max_attempts)
    "api_etl_job": 1 * HOUR,
    # one bounded batch from Kafka
    "consume_payment_events": 15 * MINUTE,
    "compute_transaction_features": 30 * MINUTE,
    "train_candidate_model": 2 * HOUR,
    "deploy_approved_model": 15 * MINUTE,
}
# `<dataset>_ingestion` jobs: download, clean and check; a backfill range runs as one run
INGESTION_JOB_MAX_RUNTIME_S = 2 * HOUR
DEFAULT_MAX_RUNTIME_S = 1 * HOUR


def max_runtime_s(job_name: str) -> int:
    """The default maximum run time of `job_name`, in seconds."""
    if job_name in MAX_RUNTIME_S:
        return MAX_RUNTIME_S[job_name]
    return INGESTION_JOB_MAX_RUNTIME_S if job_name.endswith("_ingestion") else DEFAULT_MAX_RUNTIME_S


def max_runtime_tags(job_name: str) -> dict[str, str]:
    """Run tags that give `job_name`'s runs their maximum run time (pass as `run_tags=`)."""
    return {dg.MAX_RUNTIME_SECONDS_TAG: str(max_runtime_s(job_name))}
