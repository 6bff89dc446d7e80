"""Runs left "in progress" by a local stack that is gone.

No run outlives the local stack: its run workers are children of `dagster dev`, which stops with the
stack (and the watchdog stops what a killed stack leaves). A run the instance still lists as starting,
started or canceling when a new stack starts therefore died with the old one; `dagster dev`'s default
run launcher cannot tell (it has no worker health check), so without this such a run shows as running
until its `dagster/max_runtime` fails it, hours later.
"""

from __future__ import annotations

from pathlib import Path

ORPHANED = ("the local stack stopped while this run was in progress (make dev was killed or the machine "
            "stopped); its steps were not finished: re-run it (run retries may already have)")


def close_orphaned_runs(dagster_home: Path) -> list[str]:
    """Mark the instance's in-progress runs failed (canceling ones canceled); returns their run ids.

    Call only while no stack runs on `dagster_home`."""
    import dagster as dg
    from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

    in_progress = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs(filters=RunsFilter(statuses=in_progress))
        for run in runs:
            if run.status == DagsterRunStatus.CANCELING:
                instance.report_run_canceled(run, "canceled: the local stack stopped while the run was canceling")
            else:
                instance.report_run_failed(run, ORPHANED)
        return [run.run_id for run in runs]
