"""`DAGSTER_DEPLOYMENT=prod` with the environment the chart gives the code server and run pods:
PostgreSQL, the external Kafka and training through `PipesK8sClient`, all from Secrets and the
platform ConfigMap.

The training pod itself is sent to a real API server in cluster/test_training_on_cluster.py."""

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from orchestration_platform_tests.chart.conftest import NAMESPACE, VALUE_SETS, Helm, find

# Values the existing Secret would hold; they must stay out of every recorded manifest.
SECRET_ENV = {
    "POSTGRES_URL": "postgresql://platform:pg-pass-7f3@postgresql.databases.svc:5432/platform",
    "KAFKA_BOOTSTRAP_SERVERS": "kafka-0.kafka.databases.svc:9092,kafka-1.kafka.databases.svc:9092",
    "INGESTION_WAREHOUSE_URL": "postgresql://platform:pg-pass-7f3@postgresql.databases.svc:5432/platform",
}


@pytest.fixture
def chart(helm: Helm) -> list[dict[str, Any]]:
    return helm.template(*VALUE_SETS["prod"])


@pytest.fixture
def prod_env(chart: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The code server's environment: the chart's platform ConfigMap plus the Secret's keys."""
    env = dict(find(chart, "ConfigMap", "-platform-env")["data"])
    assert env["DAGSTER_DEPLOYMENT"] == "prod"
    # In the cluster PLATFORM_DATA_DIR is the mounted volume; here a temporary directory stands in.
    env["PLATFORM_DATA_DIR"] = str(tmp_path / "data")
    env["INGESTION_LANDING_ZONE"] = str(tmp_path / "data" / "landing")
    for key, value in {**env, **SECRET_ENV}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return env


def test_prod_binds_postgres_external_kafka_and_kubernetes_training(
    chart: list[dict[str, Any]], prod_env: dict[str, str]
) -> None:
    from orchestration_platform.defs.ingestion.resources import ingestion_resources_for
    from orchestration_platform.defs.ml.resources import ml_resources_for
    from orchestration_platform.defs.shared.resources import shared_resources_for

    resources = shared_resources_for("prod") | ingestion_resources_for("prod") | ml_resources_for("prod")
    # Secrets stay environment references: the UI shows the variable's name, never its value.
    assert resources["postgres"].url == dg.EnvVar("POSTGRES_URL")
    assert resources["warehouse"].url == dg.EnvVar("INGESTION_WAREHOUSE_URL")
    kafka = resources["kafka"].bootstrap_servers
    assert isinstance(kafka, dg.EnvVar) and kafka.env_var_name == "KAFKA_BOOTSTRAP_SERVERS"
    assert (
        kafka.get_value() == SECRET_ENV["KAFKA_BOOTSTRAP_SERVERS"]
    )  # the external brokers, not a local default
    launcher = resources["training_launcher"]
    assert launcher.mode == "kubernetes"
    assert launcher.image == "registry.example.com/data/orchestration-platform:0.1.0"
    assert launcher.namespace == NAMESPACE
    service_accounts = {m["metadata"]["name"] for m in chart if m["kind"] == "ServiceAccount"}
    assert launcher.service_account in service_accounts, "training runs as a ServiceAccount the chart creates"
    assert launcher.secret_name == "orchestration-platform-secrets"
    serving_url = resources["model_serving"].url
    assert isinstance(serving_url, dg.EnvVar)
    service = find(chart, "Service", "-model-serving")
    assert serving_url.get_value() == (
        f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{service['spec']['ports'][0]['port']}"
    )


def test_the_code_location_loads_with_the_charts_prod_environment(prod_env: dict[str, str]) -> None:
    """What `dagster api grpc -m orchestration_platform.definitions -a defs` does in the code server pod."""
    from orchestration_platform.definitions import defs

    definitions = defs()
    assert {"postgres", "warehouse", "kafka", "training_launcher"} <= set(definitions.resources or {})
    assert definitions.resources["training_launcher"].mode == "kubernetes"
