"""Every job has a maximum run time, and Dagster's run monitoring, as our dagster.yaml configures it,
fails a run that exceeds it (the same code path the daemon runs for STARTED runs)."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._daemon.monitoring.run_monitoring import monitor_started_run

from orchestration_platform.defs.shared.run_limits import MAX_RUNTIME_S, max_runtime_s

REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def job_tags() -> dict[str, dict[str, str]]:
    from orchestration_platform.definitions import defs

    return {job.name: dict(job.run_tags) for job in defs().resolve_all_job_defs() if not job.name.startswith("__")}


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A Dagster instance with the repository's dagster.yaml (SQLite storage in tmp_path)."""
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as local_instance:
        yield local_instance


def test_every_job_has_a_maximum_run_time(job_tags: dict[str, dict[str, str]]) -> None:
    assert job_tags, "no jobs loaded"
    for name, tags in job_tags.items():
        assert tags.get(dg.MAX_RUNTIME_SECONDS_TAG) == str(max_runtime_s(name)), (
            f"job {name!r} has no {dg.MAX_RUNTIME_SECONDS_TAG} run tag; fix: define_asset_job(..., "
            f"run_tags=max_runtime_tags({name!r})) (defs/shared/run_limits.py)"
        )
    assert set(MAX_RUNTIME_S) <= set(job_tags)  # no default kept for a job that no longer exists


def test_run_monitoring_is_on_with_a_fallback_for_runs_of_no_job(instance: dg.DagsterInstance) -> None:
    assert instance.run_monitoring_enabled
    assert instance.run_monitoring_max_runtime_seconds == 6 * 3600
    assert instance.run_monitoring_poll_interval_seconds <= 60


def _started_run(instance: dg.DagsterInstance, tags: dict[str, str], started_s_ago: float) -> str:
    run = instance.create_run_for_job(dg.GraphDefinition("noop").to_job(name="api_etl_job"), tags=tags)
    event = DagsterEvent(event_type_value=DagsterEventType.RUN_START.value, job_name=run.job_name)
    instance.handle_new_event(EventLogEntry(error_info=None, level=logging.DEBUG, user_message="", run_id=run.run_id,
                                            timestamp=time.time() - started_s_ago, dagster_event=event))
    return run.run_id


def test_a_run_longer_than_its_jobs_maximum_fails_with_the_reason(instance: dg.DagsterInstance,
                                                                 job_tags: dict[str, dict[str, str]]) -> None:
    tags = job_tags["api_etl_job"]  # 1 h
    overdue = _started_run(instance, tags, started_s_ago=3600 + 120)
    in_time = _started_run(instance, tags, started_s_ago=600)
    for run_id in (overdue, in_time):
        monitor_started_run(instance, None, instance.get_run_record_by_id(run_id), logging.getLogger("test"))

    assert instance.get_run_by_id(overdue).status == dg.DagsterRunStatus.FAILURE
    messages = [e.message for e in instance.all_logs(overdue)]
    assert any("maximum runtime of 3600 seconds" in m for m in messages), messages
    assert instance.get_run_by_id(in_time).status == dg.DagsterRunStatus.STARTED
