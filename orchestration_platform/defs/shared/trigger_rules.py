"""Airflow trigger rules as Dagster automation conditions (read by the automation condition sensor).

| Airflow `TriggerRule` | here |
|---|---|
| `ALL_SUCCESS` (default) | `all_success(upstreams)`: every upstream materialized since this asset last ran |
| `ONE_SUCCESS` | `one_success()`: any upstream materialized since this asset last ran |
| `NONE_FAILED` | `all_success(...) & ~any_upstream_failed()` |
| `ALL_DONE` | `all_done()`: every upstream finished (succeeded or failed) since this asset last ran |
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

AC = dg.AutomationCondition


def _since_last_run(upstream: dg.AssetKey, condition: dg.AutomationCondition) -> dg.AutomationCondition:
    # `asset_matches` (not `any_deps_match(...).allow(...)`): the sensor's cursor tells conditions apart by
    # their key, and `allow` is not part of it, so two upstreams would share (and overwrite) one state.
    return AC.asset_matches(upstream, condition).since_last_handled()


def one_success() -> dg.AutomationCondition:
    """Run as soon as ANY upstream has materialized since this asset last ran (Airflow `ONE_SUCCESS`);
    the other upstreams may be missing, stale or failed."""
    return (AC.any_deps_updated().since_last_handled() & ~AC.in_progress()).with_label("one_success")


def all_success(upstreams: Sequence[dg.AssetKey]) -> dg.AutomationCondition:
    """Run once EVERY upstream has materialized since this asset last ran (Airflow `ALL_SUCCESS`), and none
    is still running; an upstream that fails holds this asset back until it succeeds."""
    condition: dg.AutomationCondition = ~AC.any_deps_in_progress() & ~AC.in_progress()
    for upstream in upstreams:
        condition = _since_last_run(upstream, AC.newly_updated()) & condition
    return condition.with_label("all_success")


def any_upstream_failed() -> dg.AutomationCondition:
    """True while any upstream's latest run failed (combine with `~` for Airflow `NONE_FAILED`)."""
    return AC.any_deps_match(AC.execution_failed()).with_label("any_upstream_failed")


def all_done(upstreams: Sequence[dg.AssetKey]) -> dg.AutomationCondition:
    """Run once EVERY upstream has finished since this asset last ran, successfully or not (Airflow `ALL_DONE`)."""
    condition: dg.AutomationCondition = ~AC.any_deps_in_progress() & ~AC.in_progress()
    for upstream in upstreams:
        condition = _since_last_run(upstream, AC.newly_updated() | AC.execution_failed().newly_true()) & condition
    return condition.with_label("all_done")
