"""`DAGSTER_DEPLOYMENT=prod` with the environment the chart gives the code server and run pods:
PostgreSQL, the external Kafka and training through `PipesK8sClient`, all from Secrets and the
platform ConfigMap.

The one stand-in: a local HTTP server in place of the Kubernetes API server (no cluster runs here).
It records the Pod that `PipesK8sClient` really sends and refuses it (403), so the run stops there.
(No `from __future__ import annotations`: Dagster resolves the asset's parameter annotations.)"""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import kubernetes.config.kube_config
import kubernetes_validate
import pytest
from dagster import AssetExecutionContext

from orchestration_platform.defs.ml.training_launcher import TrainingLauncher
from orchestration_platform_tests.chart.conftest import KUBERNETES_VERSION, NAMESPACE, VALUE_SETS, Helm, find
from orchestration_platform_tests.chart.kubeconfig import write_kubeconfig
from orchestration_platform_tests.chart.pod_security import assert_restricted_pod

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


class _RecordingKubernetesApi(BaseHTTPRequestHandler):
    """Records every object POSTed to it and refuses it, like an API server that forbids the call."""

    recorded: list[tuple[str, dict[str, Any]]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.recorded.append((self.path, json.loads(body)))
        status = json.dumps(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "code": 403,
                "reason": "Forbidden",
                "message": "offline test API server: recorded, not run",
            }
        ).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(status)))
        self.end_headers()
        self.wfile.write(status)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def kubernetes_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """A kubeconfig pointing at the recording API server; yields what was POSTed to it."""
    handler = type("Handler", (_RecordingKubernetesApi,), {"recorded": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    # The kubernetes client reads KUBECONFIG once, at import: point its default at this file too.
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    yield handler.recorded
    server.shutdown()
    server.server_close()


@dg.asset
def candidate_model(context: AssetExecutionContext, training_launcher: TrainingLauncher) -> None:
    """Starts training the way the ML assets do, through the bound training launcher."""
    training_launcher.run(
        context, extras={"feature_partitions": ["2026-01-01-00:00"]}, env={"TRAINING_SEED": "7"}
    )


def test_prod_training_is_a_restricted_pipes_pod_in_the_release_namespace(
    chart: list[dict[str, Any]], prod_env: dict[str, str], kubernetes_api: list[tuple[str, dict[str, Any]]]
) -> None:
    from orchestration_platform.defs.ml.resources import ml_resources_for

    result = dg.materialize(
        [candidate_model],
        resources={"training_launcher": ml_resources_for("prod")["training_launcher"]},
        raise_on_error=False,
    )
    assert not result.success, "the offline API server refuses the pod, so the step fails after sending it"
    [(path, pod)] = kubernetes_api
    assert path == f"/api/v1/namespaces/{NAMESPACE}/pods"
    manifest = {"apiVersion": "v1", "kind": "Pod", **pod}
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    spec = manifest["spec"]
    assert_restricted_pod(spec, "training pod (PipesK8sClient)")
    [container] = spec["containers"]
    assert container["image"] == "registry.example.com/data/orchestration-platform:0.1.0"
    assert container["command"] == ["python", "-m", "orchestration_platform.training"]
    assert container["envFrom"] == [{"secretRef": {"name": "orchestration-platform-secrets"}}]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["TRAINING_SEED"] == "7"
    assert "DAGSTER_PIPES_CONTEXT" in env and "DAGSTER_PIPES_MESSAGES" in env  # Pipes talks to this container
    assert spec["serviceAccountName"] == prod_env["TRAINING_SERVICE_ACCOUNT"]
    assert spec["restartPolicy"] == "Never"
    # The chart's sizing and shared data volume reach the pod: model files outlive it, for serving.
    assert container["resources"]["limits"]["cpu"] == prod_env["TRAINING_CPU"]
    assert container["resources"]["limits"]["memory"] == prod_env["TRAINING_MEMORY"]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [prod_env["PLATFORM_DATA_CLAIM"]]
    assert manifest["metadata"]["labels"]["app.kubernetes.io/name"] == "dagster"  # NetworkPolicy selector
    sent = json.dumps(pod)
    for secret in SECRET_ENV.values():
        assert secret not in sent, "credentials reach the pod only through the Secret"
