"""The code location loads, and its shape matches the committed snapshot.

The snapshot (`snapshots/definitions.json`) lists every asset key with its group, kinds, partitioning,
upstream deps, automation condition, freshness policy, pools and owners, and every check, job, schedule,
sensor and resource. A change to the graph shows up here as a diff
to review; accept it with `UPDATE_SNAPSHOTS=1 .venv/bin/pytest orchestration_platform_tests/test_definitions.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from dagster._core.definitions.assets.graph.remote_asset_graph import BaseAssetNode

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def describe(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "partitions": type(node.partitions_def).__name__ if node.partitions_def else None,
            "materializable": node.is_materializable,
            "has_description": bool(node.description),
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "automation_condition": _condition(node),
            "freshness_policy": _freshness(node),
            "pools": sorted(node.pools or []),
            "owners": sorted(node.owners or []),
        }
    checks = sorted(
        f"{check_key.asset_key.to_user_string()}:{check_key.name}"
        + (" (blocking)" if graph.get_check_spec(check_key).blocking else "")
        for check_key in graph.asset_check_keys
    )
    return {
        "assets": assets,
        "checks": checks,
        "jobs": sorted(job.name for job in defs.resolve_all_job_defs() if not job.name.startswith("__")),
        "schedules": sorted(s.name for s in defs.schedules or []),
        "sensors": sorted(s.name for s in defs.sensors or []),
        "resources": sorted(defs.resources or {}),
    }


def _condition(node: BaseAssetNode) -> str | None:
    """The automation condition's label (e.g. `eager`, `all_success`), or its operator when unlabelled."""
    condition = node.automation_condition
    return None if condition is None else (condition.get_label() or condition.name)


def _freshness(node: BaseAssetNode) -> str | None:
    policy = node.freshness_policy
    if policy is None:
        return None
    fields = {name: getattr(policy, name) for name in ("fail_window", "warn_window", "deadline_cron", "timezone")
              if getattr(policy, name, None) is not None}
    shown = ", ".join(f"{k}={v.to_timedelta() if hasattr(v, 'to_timedelta') else v}" for k, v in fields.items())
    return f"{type(policy).__name__}({shown})"


def test_definitions_load_and_validate() -> None:
    from orchestration_platform.definitions import defs

    loaded = defs()
    dg.Definitions.validate_loadable(loaded)
    described = describe(loaded)
    assert described["assets"], "the code location has no assets"
    undocumented = [key for key, spec in described["assets"].items() if spec["materializable"] and not spec["has_description"]]
    assert undocumented == [], f"assets without a docstring (it shows in the UI): {undocumented}"


def test_definitions_match_the_snapshot() -> None:
    from orchestration_platform.definitions import defs

    described = describe(defs())
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(described, indent=2, sort_keys=True) + "\n")
    assert SNAPSHOT.exists(), f"no snapshot at {SNAPSHOT}: create it with UPDATE_SNAPSHOTS=1"
    assert described == json.loads(SNAPSHOT.read_text()), (
        "the definitions changed; review the diff and accept it with UPDATE_SNAPSHOTS=1"
    )
