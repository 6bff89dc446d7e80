"""Hourly features: idempotent per partition, late events and late labels re-open their hour, and the
blocking checks keep a corrupted hour out of training."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from orchestration_platform.devstack.events import EventGenerator, produce_events
from orchestration_platform.lib.ml.features import load_labelled_features, stale_hours
from orchestration_platform_tests.ml import flow
from orchestration_platform_tests.ml.conftest import DAY, produce_hours


def _hour_rows(url: str, hour) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT transaction_id, amount, card_tx_count_hour, card_amount_ratio, is_fraud FROM ml.transaction_features "
            "WHERE hour = %s ORDER BY transaction_id",
            (hour,),
        ).fetchall()


def _stale(url: str) -> list:
    with psycopg.connect(url, autocommit=True) as conn:
        return [hour for hour, _ in stale_hours(conn, DAY + timedelta(days=30))]


def test_recomputing_an_hour_gives_the_same_rows(kafka_bootstrap, ml_env, ml_resources, instance):
    produce_hours(kafka_bootstrap, ml_env["topic"], hours=2, per_hour=400)
    flow.consume(ml_resources, instance)
    first = flow.compute_hour(ml_resources, instance, DAY)
    rows = _hour_rows(ml_env["postgres_url"], DAY)
    second = flow.compute_hour(ml_resources, instance, DAY)
    assert _hour_rows(ml_env["postgres_url"], DAY) == rows and len(rows) == 400
    meta = second.asset_materializations_for_node("ml__transaction_features")[0].metadata
    assert meta["rows"].value == 400 and meta["rows_replaced"].value == 400
    assert (
        first.asset_materializations_for_node("ml__transaction_features")[0].metadata["rows_replaced"].value
        == 0
    )
    # The other hour is untouched by either run, and still waits for its own run.
    assert _hour_rows(ml_env["postgres_url"], DAY + timedelta(hours=1)) == []
    assert _stale(ml_env["postgres_url"]) == [DAY + timedelta(hours=1)]


def test_late_events_and_late_labels_reopen_their_hour(kafka_bootstrap, ml_env, ml_resources, instance):
    generator = EventGenerator(seed=21)
    pairs = [generator.transaction(DAY + timedelta(seconds=10 * i)) for i in range(300)]
    produce_events(kafka_bootstrap, ml_env["topic"], [event for event, _ in pairs])
    flow.consume(ml_resources, instance)
    flow.compute_hour(ml_resources, instance, DAY)
    assert _stale(ml_env["postgres_url"]) == []
    assert all(row[4] is None for row in _hour_rows(ml_env["postgres_url"], DAY))  # no labels yet

    # A terminal that was offline sends a transaction of that hour late; labels arrive too.
    late, _ = generator.transaction(DAY + timedelta(minutes=59, seconds=30))
    labels = [generator.label(event, fraud, DAY + timedelta(hours=3)) for event, fraud in pairs[:100]]
    produce_events(kafka_bootstrap, ml_env["topic"], [late, *labels])
    flow.consume(ml_resources, instance)
    assert _stale(ml_env["postgres_url"]) == [DAY]
    flow.compute_hour(ml_resources, instance, DAY)
    rows = _hour_rows(ml_env["postgres_url"], DAY)
    assert len(rows) == 301 and late["transaction_id"] in {r[0] for r in rows}
    labelled = {r[0]: r[4] for r in rows if r[4] is not None}
    assert labelled == {event["transaction_id"]: fraud for (event, fraud) in pairs[:100]}
    assert _stale(ml_env["postgres_url"]) == []


def test_a_corrupted_hour_fails_its_blocking_check_and_is_kept_out_of_training(
    kafka_bootstrap, ml_env, ml_resources, instance
):
    produce_hours(kafka_bootstrap, ml_env["topic"], hours=2, per_hour=300)
    flow.consume(ml_resources, instance)
    with psycopg.connect(ml_env["postgres_url"]) as conn:  # corruption that validation cannot catch upstream
        conn.execute("UPDATE ml.transactions SET amount = 'NaN' WHERE occurred_at < %s AND kafka_offset %% 50 = 0",
                     (DAY + timedelta(hours=1),))  # fmt: skip
    bad = flow.compute_hour(ml_resources, instance, DAY, raise_on_error=False)
    good = flow.compute_hour(ml_resources, instance, DAY + timedelta(hours=1))
    checks = {c.check_name: c for c in bad.get_asset_check_evaluations()}
    assert not bad.success  # a failed blocking check fails the run: nothing downstream runs on it
    assert not checks["no_null_features"].passed  # NaN amounts become missing features
    assert checks["no_null_features"].metadata["null_values"].value >= 6
    assert all(c.passed for c in good.get_asset_check_evaluations())
    with psycopg.connect(ml_env["postgres_url"]) as conn:
        training_rows = load_labelled_features(conn, DAY, DAY + timedelta(hours=2))
    assert set(training_rows["hour"]) == {DAY + timedelta(hours=1)}


def test_a_transaction_sent_twice_is_one_feature_row(kafka_bootstrap, ml_env, ml_resources, instance):
    generator = EventGenerator(seed=33)
    pairs = [generator.transaction(DAY + timedelta(seconds=30 * i)) for i in range(20)]
    resent = dict(pairs[0][0], event_id="ev-resent-with-a-new-id")  # the same charge, sent again
    produce_events(kafka_bootstrap, ml_env["topic"], [event for event, _ in pairs] + [pairs[1][0], resent])
    flow.consume(ml_resources, instance)
    flow.compute_hour(ml_resources, instance, DAY)
    flow.compute_hour(ml_resources, instance, DAY)  # and the replace keeps it so
    rows = _hour_rows(ml_env["postgres_url"], DAY)
    assert sorted(r[0] for r in rows) == sorted(event["transaction_id"] for event, _ in pairs)


def test_a_store_created_before_the_hour_index_is_migrated(ml_env):
    from orchestration_platform.lib.ml.event_store import ensure_schema
    from orchestration_platform.lib.ml.features import ensure_feature_schema

    with psycopg.connect(ml_env["postgres_url"], autocommit=True) as conn:
        ensure_schema(conn)
        conn.execute(  # the previous shape, keyed by (hour, transaction_id)
            "CREATE TABLE ml.transaction_features (hour timestamptz NOT NULL, transaction_id text NOT NULL, "
            "occurred_at timestamptz NOT NULL, card_id text NOT NULL, amount double precision, "
            "log_amount double precision, hour_of_day int, is_online int, is_cross_border int, "
            "is_risky_category int, card_tx_count_hour int, card_amount_ratio double precision, "
            "is_fraud boolean, PRIMARY KEY (hour, transaction_id))"
        )
        conn.execute("INSERT INTO ml.transaction_features (hour, transaction_id, occurred_at, card_id) "
                     "VALUES (now(), 'tx-kept', now(), 'card-1')")  # fmt: skip
        ensure_feature_schema(conn)
        indexes = {
            r[0]
            for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'transaction_features'")
        }
        kept = conn.execute("SELECT transaction_id FROM ml.transaction_features").fetchall()
    assert indexes == {"transaction_features_hour"} and kept == [("tx-kept",)]
