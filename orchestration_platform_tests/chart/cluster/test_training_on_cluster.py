"""Training in prod: the ML asset's TrainingLauncher sends its PipesK8sClient pod, with the chart's
settings (image, resources, shared data claim, training ServiceAccount, Secret), to the real API
server, authenticated as the chart's ServiceAccount (what a run pod is). The pod is admitted in
the restricted namespace; played_node.py finishes it, and PipesK8sClient reads the outcome back.
Its next step, reading the Pipes messages from the pod's log, needs a kubelet: the tests stop there.
(No `from __future__ import annotations`: Dagster resolves the asset's parameter annotations.)"""

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import kubernetes.config.kube_config
import pytest
from dagster import AssetExecutionContext

from orchestration_platform.defs.ml.training_launcher import TrainingLauncher
from orchestration_platform_tests.chart.cluster.conftest import HelmOnCluster
from orchestration_platform_tests.chart.cluster.control_plane import ControlPlane
from orchestration_platform_tests.chart.cluster.kube_api import KubeApi
from orchestration_platform_tests.chart.cluster.played_node import PlayedNode
from orchestration_platform_tests.chart.conftest import RELEASE, VALUE_SETS
from orchestration_platform_tests.chart.pod_security import assert_restricted_pod

FULLNAME = f"{RELEASE}-orchestration-platform"
# What the API server answers for a pod log when no kubelet runs (the played node has no address).
NO_KUBELET = "no preferred addresses found"
# Values the existing Secret would hold; they must stay out of the pod sent to the API server.
SECRET_ENV = {
    "POSTGRES_URL": "postgresql://platform:pg-pass-7f3@postgresql.databases.svc:5432/platform",
    "KAFKA_BOOTSTRAP_SERVERS": "kafka-0.kafka.databases.svc:9092,kafka-1.kafka.databases.svc:9092",
    "INGESTION_WAREHOUSE_URL": "postgresql://platform:pg-pass-7f3@postgresql.databases.svc:5432/platform",
}


@dg.asset
def candidate_model(context: AssetExecutionContext, training_launcher: TrainingLauncher) -> None:
    """Starts training the way the ML assets do, through the bound training launcher."""
    training_launcher.run(
        context, extras={"feature_partitions": ["2026-01-01-00:00"]}, env={"TRAINING_SEED": "7"}
    )


@pytest.fixture
def run_pod_environment(
    control_plane: ControlPlane,
    cluster_helm: HelmOnCluster,
    namespace: str,
    admin_api: KubeApi,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> dict[str, str]:
    """A run pod's view of the prod release: its ConfigMap and Secret as env, its ServiceAccount's token."""
    if control_plane.external:
        pytest.skip("plays the node: on your own cluster a real kubelet would run (and pull) the pod")
    cluster_helm.install(namespace, *VALUE_SETS["prod"])
    env = dict(admin_api.get(KubeApi.path("ConfigMap", namespace, f"{FULLNAME}-platform-env"))["data"])
    assert env["DAGSTER_DEPLOYMENT"] == "prod" and env["TRAINING_NAMESPACE"] == namespace
    env["PLATFORM_DATA_DIR"] = str(tmp_path / "data")  # the mounted claim, in the pod
    env["INGESTION_LANDING_ZONE"] = str(tmp_path / "data" / "landing")
    for key, value in {**env, **SECRET_ENV}.items():
        monkeypatch.setenv(key, value)
    token = admin_api.service_account_token(namespace, FULLNAME)
    kubeconfig = control_plane.write_kubeconfig(tmp_path / "run-pod.kubeconfig", token, namespace)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    # The kubernetes client reads KUBECONFIG once, at import: point its default at this file too.
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    # No kubelet serves pod logs here: fail on the first attempt instead of retrying.
    monkeypatch.setenv("DAGSTER_PIPES_K8S_CONSUME_POD_LOGS_RETRIES", "0")
    return env


class _NodeThread:
    """Runs PlayedNode in the background: finishes the first bare pod (no owner) with `exit_code`."""

    def __init__(self, api: KubeApi, namespace: str, exit_code: int) -> None:
        self.api, self.namespace, self.exit_code = api, namespace, exit_code
        self.pod: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            node = PlayedNode(self.api)
            node.register()
            while not self._stop.wait(0.2):
                bare = [
                    p for p in self.api.items("Pod", self.namespace) if not p["metadata"].get("ownerReferences")
                ]
                if bare:
                    self.pod = bare[0]
                    node.finish(self.namespace, bare[0]["metadata"]["name"], self.exit_code)
                    return
        except BaseException as error:  # reported by the test
            self.error = error

    def __enter__(self) -> "_NodeThread":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture
def training_launcher(run_pod_environment: dict[str, str]) -> Iterator[TrainingLauncher]:
    from orchestration_platform.defs.ml.resources import ml_resources_for

    yield ml_resources_for("prod")["training_launcher"]


def _materialize(launcher: TrainingLauncher) -> dg.ExecuteInProcessResult:
    return dg.materialize([candidate_model], resources={"training_launcher": launcher}, raise_on_error=False)


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return str(failure.step_failure_data.error)


def test_the_training_pod_is_admitted_with_the_charts_settings_and_its_failure_read_back(
    admin_api: KubeApi, namespace: str, run_pod_environment: dict[str, str], training_launcher: TrainingLauncher
) -> None:
    env = run_pod_environment
    with _NodeThread(admin_api, namespace, exit_code=3) as node:
        result = _materialize(training_launcher)
    assert node.error is None, node.error
    assert node.pod is not None, "PipesK8sClient created no pod"
    assert not result.success
    # dagster-k8s read the pod's Failed state and asked for the failed container's last log lines,
    # which only a kubelet serves: the API server answers that no node address is known.
    message = _failure_message(result)
    assert "in retrieve_pod_logs" in message and NO_KUBELET in message, message

    pod = node.pod  # as the API server stored it, after admission
    spec = pod["spec"]
    assert_restricted_pod(spec, "training pod (PipesK8sClient)")
    [container] = spec["containers"]
    assert container["image"] == env["TRAINING_IMAGE"]
    assert container["command"] == ["python", "-m", "orchestration_platform.training"]
    assert container["envFrom"] == [{"secretRef": {"name": "orchestration-platform-secrets"}}]
    pod_env = {item["name"]: item.get("value") for item in container["env"]}
    assert pod_env["TRAINING_SEED"] == "7"
    assert "DAGSTER_PIPES_CONTEXT" in pod_env and "DAGSTER_PIPES_MESSAGES" in pod_env
    assert spec["serviceAccountName"] == env["TRAINING_SERVICE_ACCOUNT"] == f"{FULLNAME}-training"
    assert container["resources"]["limits"]["cpu"] == env["TRAINING_CPU"] == "2"
    assert container["resources"]["limits"]["memory"] == env["TRAINING_MEMORY"] == "4Gi"
    claims = [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert claims == [env["PLATFORM_DATA_CLAIM"]] == ["orchestration-platform-data"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "dagster"  # NetworkPolicy selector
    sent = json.dumps(pod)
    for secret in SECRET_ENV.values():
        assert secret not in sent, "credentials reach the pod only through the Secret"
    # PipesK8sClient deletes its pod once the outcome is read.
    assert admin_api.request("GET", KubeApi.path("Pod", namespace, pod["metadata"]["name"])).status == 404


def test_a_finished_training_pod_is_read_as_completed(
    admin_api: KubeApi, namespace: str, training_launcher: TrainingLauncher
) -> None:
    """Exit code 0: PipesK8sClient sees the pod complete and goes on to read its messages from the
    pod's log, which only a kubelet serves: that is where this machine stops (no container runtime)."""
    with _NodeThread(admin_api, namespace, exit_code=0) as node:
        result = _materialize(training_launcher)
    assert node.error is None, node.error
    assert node.pod is not None, "PipesK8sClient created no pod"
    message = _failure_message(result)
    assert "in wait_for_pod" not in message, "the wait ended when the pod completed"
    assert "in consume_pod_logs" in message and NO_KUBELET in message, message
