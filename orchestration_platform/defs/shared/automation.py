"""The automation condition sensor: evaluates every asset's `AutomationCondition` (declarative automation).

On by default, so tables declared with a trigger rule (`defs/shared/trigger_rules.py`) refresh after
their upstreams without a schedule. Assets without a condition are never started by it.
"""

from __future__ import annotations

import dagster as dg

automation_sensor = dg.AutomationConditionSensorDefinition(
    "platform_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Starts runs for assets whose automation condition (trigger rule) became true.",
)
