"""The rendered instance dagster.yaml is checked by Dagster's own config types (the instance schema,
then each `module`/`class` entry's `config_type()`). The K8sRunLauncher built from it launches
real run Jobs in cluster/test_run_launcher_on_cluster.py."""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._config import process_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config

from orchestration_platform_tests.chart.conftest import (
    NAMESPACE,
    VALUE_SETS,
    Helm,
    instance_yaml,
)


def _validate_instance(config: dict[str, Any], directory: Path) -> dict[str, Any]:
    """Dagster's own checks: the instance schema, then every configurable class's config type."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dagster.yaml").write_text(yaml.safe_dump(config))
    validated, _ = dagster_instance_config(str(directory))
    processed: dict[str, Any] = {}
    for key, entry in config.items():
        if isinstance(entry, dict) and {"module", "class"} <= set(entry):
            klass = getattr(importlib.import_module(entry["module"]), entry["class"])
            result = process_config(klass.config_type(), entry.get("config") or {})
            if not result.success:
                raise DagsterInvalidConfigError(
                    f"{key}: {entry['class']} config", result.errors, entry.get("config")
                )
            processed[key] = result.value
    return {"instance": validated, **processed}


@pytest.fixture
def pg_password(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "s3cret-from-the-secret")
    return "s3cret-from-the-secret"


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_rendered_instance_passes_dagsters_config_types(
    helm: Helm, value_set: str, tmp_path: Path, pg_password: str
) -> None:
    config = instance_yaml(helm.template(*VALUE_SETS[value_set]))
    processed = _validate_instance(config, tmp_path)
    assert set(processed) >= {
        "run_storage",
        "event_log_storage",
        "schedule_storage",
        "run_launcher",
        "scheduler",
        "compute_logs",
    }
    for storage in ("run_storage", "event_log_storage", "schedule_storage"):
        assert config[storage]["module"].startswith("dagster_postgres.")
        db = processed[storage]["postgres_db"]
        assert db["password"] == pg_password  # resolved from the env var the Secret fills
        assert db["scheme"] == "postgresql+psycopg2"
    launcher = processed["run_launcher"]
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    assert launcher["job_namespace"] == NAMESPACE
    assert launcher["postgres_password_secret"] == "dagster-postgresql"


def test_queue_monitoring_and_retries_are_configured(helm: Helm, tmp_path: Path, pg_password: str) -> None:
    config = instance_yaml(helm.template(*VALUE_SETS["prod"]))
    processed = _validate_instance(config, tmp_path)
    instance = processed["instance"]
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert instance["concurrency"]["runs"]["max_concurrent_runs"] == 20
    assert {"key": "dagster/backfill", "limit": 5} in instance["concurrency"]["runs"][
        "tag_concurrency_limits"
    ]
    assert instance["concurrency"]["pools"] == {"default_limit": 8, "granularity": "op"}
    assert (
        instance["run_monitoring"]["enabled"] is True
        and instance["run_monitoring"]["max_resume_run_attempts"] == 1
    )
    assert instance["run_retries"] == {
        "enabled": True,
        "max_retries": 2,
        "retry_on_asset_or_op_failure": False,
    }
    assert instance["sensors"]["use_threads"] and instance["schedules"]["use_threads"]
    assert instance["telemetry"] == {"enabled": False}


@pytest.mark.parametrize(
    ("path", "typo"),
    [
        (("run_launcher", "config", "image_pull_policy"), "image_pul_policy"),
        (("run_storage", "config", "postgres_db", "hostname"), "host_name"),
        (("run_monitoring", "start_timeout_seconds"), "start_timeout"),
    ],
)
def test_a_typo_in_the_instance_config_is_caught(
    helm: Helm, tmp_path: Path, pg_password: str, path: tuple[str, ...], typo: str
) -> None:
    """The check above is not a formality: one misspelled key fails it."""
    config = copy.deepcopy(instance_yaml(helm.template(*VALUE_SETS["default"])))
    node = config
    for key in path[:-1]:
        node = node[key]
    node[typo] = node.pop(path[-1])
    with pytest.raises(DagsterInvalidConfigError):
        _validate_instance(config, tmp_path)
