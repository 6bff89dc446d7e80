"""Production storage: the pipeline on a PostgreSQL-backed Dagster instance (dagster-postgres),
writing its tables to a PostgreSQL warehouse, on the session's real server."""

from __future__ import annotations

import dagster as dg
import psycopg

from orchestration_platform_tests.ingestion.conftest import CLEANED_KEY, SUMMARY_KEY


def test_the_pipeline_runs_on_postgres_instance_storage_and_a_postgres_warehouse(
    materialize_days, ingestion_env, fresh_database: str, monkeypatch
) -> None:
    monkeypatch.setenv("INGESTION_WAREHOUSE_URL", fresh_database)
    storage_url = fresh_database.replace("postgresql://", "postgresql+psycopg2://", 1)
    with dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_url": storage_url}}}) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        for _ in range(2):  # idempotent on PostgreSQL too
            result = materialize_days("2026-06-01", "2026-06-03", instance=instance)
            assert result.success
        records = instance.fetch_materializations(CLEANED_KEY, limit=100).records
        assert {r.partition_key for r in records} == {"2026-06-01", "2026-06-02", "2026-06-03"}
        assert len(records) == 6
        summary_records = instance.fetch_materializations(SUMMARY_KEY, limit=100).records
        assert {r.partition_key for r in summary_records} == {"2026-06-01", "2026-06-02", "2026-06-03"}
        (latest,) = [e for e in result.get_asset_materialization_events() if e.asset_key == CLEANED_KEY][:1]
        shown = latest.materialization.metadata["warehouse"].value
        password = fresh_database.split(":")[2].split("@")[0]
        assert password not in shown and ":***@" in shown  # the secret never reaches the UI
        evaluations = result.get_asset_check_evaluations()
        assert evaluations and all(e.passed for e in evaluations)
    with psycopg.connect(fresh_database) as conn:
        per_day = conn.execute("SELECT partition_date::text, count(*), count(DISTINCT report_id) "
                               "FROM daily_cases GROUP BY 1 ORDER BY 1").fetchall()
        summary = conn.execute("SELECT sum(reports) FROM daily_regional_summary").fetchone()[0]
        dagster_tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('runs', 'event_logs')"
        ).fetchone()[0]
    assert [d for d, _, _ in per_day] == ["2026-06-01", "2026-06-02", "2026-06-03"]
    assert all(n == distinct for _, n, distinct in per_day)
    assert summary == sum(n for _, n, _ in per_day)
    assert dagster_tables == 2  # the instance's runs and events live in PostgreSQL
