"""Per-pool limits reach the instance through the `pool_limits` sensor: the SQLite warehouse writer gets
one slot in every deployment, the event consumers one per configured consumer, a deployment can change
them, and a bad override names the fix."""

from __future__ import annotations

import dagster as dg
import pytest

from orchestration_platform.defs.shared.pools import declared_pool_limits, pool_limits_sensor


def slots(instance: dg.DagsterInstance, pool: str) -> int:
    return instance.event_log_storage.get_concurrency_info(pool).slot_count


def test_the_sensor_gives_the_sqlite_writer_one_slot_and_then_leaves_it(monkeypatch):
    monkeypatch.delenv("PLATFORM_POOL_LIMITS", raising=False)
    with dg.instance_for_test() as instance:
        first = pool_limits_sensor(dg.build_sensor_context(instance=instance))
        assert slots(instance, "ingestion_warehouse") == 1
        assert "set ingestion_warehouse=1" in first.skip_message
        second = pool_limits_sensor(dg.build_sensor_context(instance=instance))
        assert "already as declared" in second.skip_message


def test_a_limit_changed_by_hand_is_put_back(monkeypatch):
    monkeypatch.delenv("PLATFORM_POOL_LIMITS", raising=False)
    with dg.instance_for_test() as instance:
        instance.event_log_storage.set_concurrency_slots("ingestion_warehouse", 5)
        pool_limits_sensor(dg.build_sensor_context(instance=instance))
        assert slots(instance, "ingestion_warehouse") == 1


def test_a_deployment_overrides_the_limits(monkeypatch):
    monkeypatch.setenv("PLATFORM_POOL_LIMITS", "ingestion_warehouse=4, api_etl=2")
    with dg.instance_for_test() as instance:
        pool_limits_sensor(dg.build_sensor_context(instance=instance))
        assert (slots(instance, "ingestion_warehouse"), slots(instance, "api_etl")) == (4, 2)


@pytest.mark.parametrize("raw", ["ingestion_warehouse", "ingestion_warehouse=one", "=2"])
def test_a_bad_override_names_the_item_and_the_fix(raw):
    with pytest.raises(ValueError, match=r"is not `pool=limit`; fix: e\.g\. PLATFORM_POOL_LIMITS="):
        declared_pool_limits(raw)


def test_the_consumer_pool_follows_the_number_of_consumers(monkeypatch):
    monkeypatch.delenv("PLATFORM_POOL_LIMITS", raising=False)
    monkeypatch.delenv("ML_CONSUMERS", raising=False)
    with dg.instance_for_test() as instance:
        pool_limits_sensor(dg.build_sensor_context(instance=instance))
        assert slots(instance, "ml_events_consumer") == 1  # one consumer by default: a second run would wait
        monkeypatch.setenv("ML_CONSUMERS", "6")  # scaled out: every consumer run the lag sensor starts gets a slot
        pool_limits_sensor(dg.build_sensor_context(instance=instance))
        assert slots(instance, "ml_events_consumer") == 6
