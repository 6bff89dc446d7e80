"""Run-level policy for a calm `make dev`: single-step runs execute in the run's own process (no process
per step), every run does in the `local` deployment, and at most two runs execute at once locally."""

from __future__ import annotations

import os

import dagster as dg
import pytest
import yaml

from orchestration_platform.definitions import defs, in_process_unless_parallel
from orchestration_platform.settings import REPO_ROOT


@dg.op
def record_pid() -> int:
    return os.getpid()


@dg.op
def other_pid() -> int:
    return os.getpid()


@dg.job(executor_def=in_process_unless_parallel)
def one_step() -> None:
    record_pid()


@dg.job(executor_def=in_process_unless_parallel)
def two_steps() -> None:
    record_pid()
    other_pid()


def _engine_messages(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(
        e.message or "" for e in instance.all_logs(run_id) if e.dagster_event and e.dagster_event.is_engine_event
    )


@pytest.mark.parametrize(
    ("job", "deployment", "in_process"),
    [(one_step, "test", True), (two_steps, "test", False), (two_steps, "local", True)],
    ids=["one-step", "two-steps", "two-steps-local"],
)
def test_a_run_uses_a_process_per_step_only_when_it_has_several_steps_outside_local(
    tmp_path, monkeypatch, job, deployment: str, in_process: bool
) -> None:
    monkeypatch.setenv("DAGSTER_DEPLOYMENT", deployment)
    with (
        dg.instance_for_test(temp_dir=str(tmp_path)) as instance,
        dg.execute_job(dg.reconstructable(job), instance=instance) as result,
    ):
        assert result.success
        messages = _engine_messages(instance, result.run_id)
        pids = {result.output_for_node(node.name) for node in job.nodes}
    if in_process:
        assert "Executing steps in process" in messages and pids == {os.getpid()}
    else:
        assert "Multiprocess executor" in messages and os.getpid() not in pids and len(pids) == 2


def test_every_job_without_an_executor_of_its_own_gets_the_policy() -> None:
    repository = defs().get_repository_def()
    executors = {job.name: job.executor_def.name for job in repository.get_all_jobs()}
    # a job may choose for itself (the ingestion job runs in process too); none uses a process per step
    assert "in_process_unless_parallel" in executors.values()
    assert set(executors.values()) <= {"in_process_unless_parallel", "in_process"}, executors


def test_at_most_two_runs_execute_at_once_locally_and_a_backfill_leaves_a_slot() -> None:
    runs = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())["concurrency"]["runs"]
    assert runs["max_concurrent_runs"] == 2
    backfill = next(limit for limit in runs["tag_concurrency_limits"] if limit["key"] == "dagster/backfill")
    assert backfill["limit"] < runs["max_concurrent_runs"]
