"""The rendered instance dagster.yaml is checked by Dagster's own config types (the instance schema,
then each `module`/`class` entry's `config_type()`), and the K8sRunLauncher built from it launches
run pods that inherit the image, settings, secrets and security posture.

The one stand-in: a recorder in place of the Kubernetes Batch API (no cluster can run here); the
Job it receives is exactly what dagster-k8s would send, and it is validated like the chart."""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from typing import Any

import kubernetes
import kubernetes_validate
import pytest
import yaml
from dagster._config import process_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config

from orchestration_platform_tests.chart.conftest import (
    KUBERNETES_VERSION,
    NAMESPACE,
    VALUE_SETS,
    Helm,
    instance_yaml,
)
from orchestration_platform_tests.chart.kubeconfig import write_kubeconfig
from orchestration_platform_tests.chart.pod_security import assert_restricted_pod

IMAGE = "registry.example.com/data/orchestration-platform:0.1.0"


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


class RecordingBatchApi:
    """Stands in for the Kubernetes Batch API (no cluster here): keeps the Jobs it is asked to create."""

    def __init__(self) -> None:
        self.created: list[tuple[str, Any]] = []

    def create_namespaced_job(self, body: Any, namespace: str, **_: Any) -> Any:
        self.created.append((namespace, body))
        return body


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig for a cluster that is never contacted (the launcher loads one at start)."""
    return write_kubeconfig(tmp_path / "kubeconfig")


def test_run_pods_inherit_image_settings_secrets_and_security(
    helm: Helm, kubeconfig: Path, pg_password: str
) -> None:
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.launcher import LaunchRunContext
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster._core.test_utils import create_run_for_test, instance_for_test
    from dagster_k8s.client import DagsterKubernetesClient

    config = instance_yaml(helm.template(*VALUE_SETS["prod"]))
    launcher_config = {
        **config["run_launcher"]["config"],
        "load_incluster_config": False,
        "kubeconfig_file": str(kubeconfig),
    }
    with instance_for_test(
        overrides={"run_launcher": {**config["run_launcher"], "config": launcher_config}}
    ) as instance:
        batch = RecordingBatchApi()
        instance.run_launcher._api_client = DagsterKubernetesClient.production_client(
            batch_api_override=batch
        )
        # The code server reports its own image (DAGSTER_CURRENT_IMAGE): runs use exactly that one.
        origin = JobPythonOrigin(
            "__ASSET_JOB",
            RepositoryPythonOrigin(
                executable_path="python",
                code_pointer=ModuleCodePointer(
                    "orchestration_platform.definitions", "defs", working_directory=None
                ),
                container_image=IMAGE,
            ),
        )
        run = create_run_for_test(instance, job_name="__ASSET_JOB", job_code_origin=origin)
        instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))

    [(namespace, job)] = batch.created
    assert namespace == NAMESPACE
    manifest = kubernetes.client.ApiClient().sanitize_for_serialization(job)
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    pod = manifest["spec"]["template"]["spec"]
    assert_restricted_pod(pod, where="run pod")
    [container] = pod["containers"]
    assert container["image"] == IMAGE
    assert container["args"][:5] == ["python", "-m", "dagster", "api", "execute_run"]
    env_from = {next(iter(source)): next(iter(source.values()))["name"] for source in container["envFrom"]}
    assert env_from == {
        "configMapRef": "op-orchestration-platform-platform-env",
        "secretRef": "orchestration-platform-secrets",
    }
    env = {e["name"]: e for e in container["env"]}
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "dagster-postgresql",
        "key": "postgresql-password",
    }
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "6Gi"}}
    assert pod["serviceAccountName"] == "op-orchestration-platform"
    labels = manifest["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "run-worker"  # what the NetworkPolicies select
    assert labels["app.kubernetes.io/instance"] == "op"
    assert labels["app.kubernetes.io/name"] == "dagster"
    assert manifest["spec"]["backoffLimit"] == 0 and manifest["spec"]["ttlSecondsAfterFinished"] == 172800
    assert {m["mountPath"] for m in container["volumeMounts"]} == {
        "/opt/dagster/dagster_home",
        "/tmp",
        "/var/lib/orchestration-platform",
    }
    data = next(v for v in pod["volumes"] if v["name"] == "platform-data")
    assert data["persistentVolumeClaim"]["claimName"] == "orchestration-platform-data"
    assert pg_password not in str(manifest), "the password itself never reaches the Job"
