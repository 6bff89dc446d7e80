"""A new local stack closes the runs its killed predecessor left "in progress", in a real instance."""

from __future__ import annotations

import dagster as dg
from dagster._core.storage.dagster_run import DagsterRunStatus

from orchestration_platform.devstack.orphaned_runs import close_orphaned_runs
from orchestration_platform.settings import REPO_ROOT


def test_runs_left_in_progress_by_a_killed_stack_are_closed_and_finished_ones_kept(tmp_path) -> None:
    (tmp_path / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())  # as `make dev` does
    statuses = [DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.CANCELING,
                DagsterRunStatus.NOT_STARTED, DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE]
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        runs = {status: instance.add_run(dg.DagsterRun(job_name="daily_cases_ingestion", status=status))
                for status in statuses}

    closed = close_orphaned_runs(tmp_path)

    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        now = {status: instance.get_run_by_id(run.run_id).status for status, run in runs.items()}
        failure = instance.all_logs(runs[DagsterRunStatus.STARTED].run_id,
                                    of_type=dg.DagsterEventType.RUN_FAILURE)[0]
    assert sorted(closed) == sorted(runs[s].run_id for s in statuses[:3])
    assert now == {DagsterRunStatus.STARTED: DagsterRunStatus.FAILURE, DagsterRunStatus.STARTING: DagsterRunStatus.FAILURE,
                   DagsterRunStatus.CANCELING: DagsterRunStatus.CANCELED, DagsterRunStatus.NOT_STARTED: DagsterRunStatus.NOT_STARTED,
                   DagsterRunStatus.SUCCESS: DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE: DagsterRunStatus.FAILURE}
    assert "the local stack stopped while this run was in progress" in failure.message
    assert close_orphaned_runs(tmp_path) == []  # the next start finds nothing left
