"""The code location: every definition under `defs/`, assembled in one place, and the run-level policy.

`dagster dev` and the Kubernetes code server load `orchestration_platform.definitions:defs`.

Policy: a run executes its steps in the run's own process when it has a single step (a process per
step only adds its start, ~2-3 s of CPU for nothing to parallelise) and always in the `local`
deployment (a laptop's few cores go to the webserver, not to step processes); other multi-step runs
use a process per step, at most `max_concurrent` at once. A job that sets its own executor keeps it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from dagster._core.definitions.executor_definition import (
    MULTI_PROC_CONFIG,
    _core_in_process_executor_creation,
    _core_multiprocess_executor_creation,
    multiple_process_executor_requirements,
)
from dagster._core.executor.base import Executor

if TYPE_CHECKING:
    from dagster._core.events import DagsterEvent
    from dagster._core.execution.context.system import PlanOrchestrationContext
    from dagster._core.execution.plan.plan import ExecutionPlan


class InProcessUnlessParallel(Executor):
    """In process for a one-step run (or everywhere, `in_process_always`); a process per step otherwise."""

    def __init__(self, in_process: Executor, multiprocess: Executor, in_process_always: bool) -> None:
        self.in_process = in_process
        self.multiprocess = multiprocess
        self.in_process_always = in_process_always

    @property
    def retries(self):
        return self.multiprocess.retries

    @property
    def step_dependency_config(self):
        return self.multiprocess.step_dependency_config

    def chosen(self, execution_plan: ExecutionPlan) -> Executor:
        one_step = len(execution_plan.step_keys_to_execute) <= 1
        return self.in_process if self.in_process_always or one_step else self.multiprocess

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        return self.chosen(execution_plan).execute(plan_context, execution_plan)


@dg.executor(
    name="in_process_unless_parallel",
    config_schema=MULTI_PROC_CONFIG,
    requirements=multiple_process_executor_requirements(),
)
def in_process_unless_parallel(init_context: dg.InitExecutorContext) -> Executor:
    """One-step runs (and every run of the `local` deployment) in process; others a process per step."""
    from orchestration_platform.settings import get_settings

    config = dict(init_context.executor_config)
    in_process = _core_in_process_executor_creation(  # the same retries setting for both
        {"retries": config["retries"], "step_dependency_config": config.get("step_dependency_config")}
    )
    return InProcessUnlessParallel(
        in_process, _core_multiprocess_executor_creation(config), get_settings().deployment == "local"
    )


@dg.definitions
def defs() -> dg.Definitions:
    # What is alive at the first load (Dagster's import) lives as long as the process: frozen, later full
    # collections (and the exit of short-lived run and step processes, ~0.18 s) skip it.
    if gc.get_freeze_count() == 0:
        gc.freeze()
    import orchestration_platform.components  # noqa: F401 - component YAML read through libyaml (same result)

    # The load builds a graph of long-lived objects and leaves little garbage: collecting while it grows
    # only walks it again and again (~80 young collections, 3 full ones; 8% of the load). One collection
    # after the load, when the collector next runs, does the same work once.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return dg.Definitions.merge(
            dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
            dg.Definitions(executor=in_process_unless_parallel),
        )
    finally:
        if collecting:
            gc.enable()
