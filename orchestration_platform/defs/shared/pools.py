"""Per-pool limits (`pool=` on assets): how many steps of a pool run at once across all runs.

Dagster keeps per-pool limits in the instance's database, not in `dagster.yaml` (whose `concurrency.pools`
only has `default_limit`, applied to every pool without a limit of its own). So the limits are declared
here and the sensor `pool_limits` (on by default) writes them into the instance of whatever deployment
runs it: `make dev`'s SQLite instance and the chart's PostgreSQL one alike. A deployment overrides them
with PLATFORM_POOL_LIMITS (e.g. `ingestion_warehouse=4,api_etl=2`; the chart: `platform.env`).

| pool | limit | why |
|---|---|---|
| `ingestion_warehouse` | 1 | SQLite has a single writer: two partitions writing at once would wait on its lock |
| `ml_events_consumer` | `ML_CONSUMERS` (1) | one slot per consumer run the lag sensor starts; a consume run beyond them would only find its partitions locked |
"""

from __future__ import annotations

import os

import dagster as dg

POOL_LIMITS: dict[str, int] = {"ingestion_warehouse": 1}


def declared_pool_limits(raw: str | None = None) -> dict[str, int]:
    """POOL_LIMITS (and the consumer pool sized by ML_CONSUMERS) with PLATFORM_POOL_LIMITS applied over it."""
    from orchestration_platform.defs.ml.resources import parallel_consumers

    raw = os.environ.get("PLATFORM_POOL_LIMITS", "") if raw is None else raw
    limits = {**POOL_LIMITS, "ml_events_consumer": parallel_consumers()}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        pool, _, limit = item.partition("=")
        if not pool.strip() or not limit.strip().isdigit():
            raise ValueError(f"PLATFORM_POOL_LIMITS item {item!r} is not `pool=limit`; fix: e.g. "
                             "PLATFORM_POOL_LIMITS='ingestion_warehouse=1,api_etl=2' (limits are whole numbers >= 0)")
        limits[pool.strip()] = int(limit)
    return limits


def apply_pool_limits(instance: dg.DagsterInstance, limits: dict[str, int]) -> dict[str, int]:
    """Set each pool's limit in the instance where it differs; returns the limits it changed."""
    storage = instance.event_log_storage
    changed = {}
    for pool, limit in sorted(limits.items()):
        if storage.get_concurrency_info(pool).slot_count != limit:
            storage.set_concurrency_slots(pool, limit)
            changed[pool] = limit
    return changed


@dg.sensor(name="pool_limits", minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Keeps the instance's per-pool limits at the declared ones (defs/shared/pools.py).")
def pool_limits_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    limits = declared_pool_limits()
    changed = apply_pool_limits(context.instance, limits)
    shown = ", ".join(f"{pool}={limit}" for pool, limit in sorted(limits.items()))
    if changed:
        context.log.info(f"pool limits set: {changed}")
        return dg.SkipReason(f"set {', '.join(f'{p}={n}' for p, n in changed.items())} (declared: {shown})")
    return dg.SkipReason(f"pool limits already as declared: {shown}")
