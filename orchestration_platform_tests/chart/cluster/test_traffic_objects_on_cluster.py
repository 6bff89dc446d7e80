"""NetworkPolicies, the PodDisruptionBudget, the HorizontalPodAutoscaler and the Ingress of a release
(the `ingress` values set enables them all), accepted by the real API server and wired to what
they govern: each selector matches the release's pods, the disruption and autoscaling controllers
find their targets, the Ingress points at the webserver Service's port."""

from __future__ import annotations

from typing import Any

import pytest

from orchestration_platform_tests.chart.cluster.conftest import HelmOnCluster
from orchestration_platform_tests.chart.cluster.kube_api import KubeApi, wait_for
from orchestration_platform_tests.chart.cluster.workloads import assert_deployments_create_their_pods
from orchestration_platform_tests.chart.conftest import RELEASE, VALUE_SETS

FULLNAME = f"{RELEASE}-orchestration-platform"


@pytest.fixture
def release_pods(cluster_helm: HelmOnCluster, admin_api: KubeApi, namespace: str) -> list[dict[str, Any]]:
    cluster_helm.install(namespace, *VALUE_SETS["ingress"])
    return assert_deployments_create_their_pods(admin_api, namespace)


def _label_selector(selector: dict[str, Any]) -> str:
    """A LabelSelector as the `labelSelector` query string, so the API server does the matching."""
    terms = [f"{key}={value}" for key, value in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        terms.append(
            {"In": f"{key} in ({','.join(values)})", "NotIn": f"{key} notin ({','.join(values)})",
             "Exists": key, "DoesNotExist": f"!{key}"}[operator]
        )  # fmt: skip
    return ",".join(terms)


def _selected(api: KubeApi, namespace: str, selector: dict[str, Any]) -> list[dict[str, Any]]:
    return api.items("Pod", namespace, labelSelector=_label_selector(selector))


def test_every_network_policy_selects_release_pods(
    admin_api: KubeApi, namespace: str, release_pods: list[dict[str, Any]]
) -> None:
    policies = admin_api.items("NetworkPolicy", namespace)
    assert policies, "the ingress values set keeps NetworkPolicies on"
    default_deny = [
        p for p in policies
        if not p["spec"]["podSelector"] and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress") and not p["spec"].get("egress")
    ]  # fmt: skip
    assert default_deny, "a default-deny policy for every pod of the namespace"
    components = {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in release_pods}
    for policy in policies:
        selector = policy["spec"]["podSelector"]
        # Run and training pods come later (from Jobs / Pipes, labelled app.kubernetes.io/name=dagster
        # by dagster-k8s), so a policy may select only those.
        labels = selector.get("matchLabels", {})
        later = (
            labels.get("app.kubernetes.io/component") in {"run-worker", "training"}
            or labels.get("app.kubernetes.io/name") == "dagster"
        )
        assert _selected(admin_api, namespace, selector) or later, (
            f"NetworkPolicy {policy['metadata']['name']} selects no pod of {components}"
        )


def test_the_disruption_budget_and_autoscaler_find_model_serving(
    admin_api: KubeApi, namespace: str, release_pods: list[dict[str, Any]]
) -> None:
    [hpa] = admin_api.items("HorizontalPodAutoscaler", namespace)
    target = hpa["spec"]["scaleTargetRef"]
    assert target["kind"] == "Deployment" and target["name"] == f"{FULLNAME}-model-serving"
    deployment_path = KubeApi.path("Deployment", namespace, target["name"])
    # The Deployment leaves its replica count to the autoscaler, which raises it to minReplicas
    # (no metrics are needed for that; none exist here).
    min_replicas = hpa["spec"]["minReplicas"]
    wait_for(lambda: admin_api.get(deployment_path)["spec"]["replicas"] == min_replicas,
             f"the autoscaler to scale model serving to minReplicas={min_replicas}", timeout=60)  # fmt: skip
    assert_deployments_create_their_pods(admin_api, namespace)

    [pdb] = admin_api.items("PodDisruptionBudget", namespace)
    serving = _selected(admin_api, namespace, pdb["spec"]["selector"])
    assert all(p["metadata"]["name"].startswith(f"{FULLNAME}-model-serving-") for p in serving)
    assert len(serving) == min_replicas > pdb["spec"]["minAvailable"]
    # The disruption controller counts the pods the budget covers (none healthy: no kubelet here).
    wait_for(
        lambda: admin_api.get(KubeApi.path("PodDisruptionBudget", namespace, pdb["metadata"]["name"]))
        .get("status", {}).get("expectedPods") == len(serving),
        "the disruption controller to count the budget's pods",
    )


def test_the_ingress_routes_to_the_webserver_service(
    admin_api: KubeApi, namespace: str, release_pods: list[dict[str, Any]]
) -> None:
    [ingress] = admin_api.items("Ingress", namespace)
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "dagster.example.com"
    [path] = rule["http"]["paths"]
    backend = path["backend"]["service"]
    service = admin_api.get(KubeApi.path("Service", namespace, backend["name"]))
    ports = {(p.get("name"), p["port"]) for p in service["spec"]["ports"]}
    assert backend["port"].get("name") in {n for n, _ in ports} or backend["port"].get("number") in {
        n for _, n in ports
    }, (backend, ports)
    webserver = _selected(admin_api, namespace, {"matchLabels": service["spec"]["selector"]})
    assert webserver and all("-webserver-" in p["metadata"]["name"] for p in webserver)
    assert ingress["spec"]["tls"] == [{"hosts": ["dagster.example.com"], "secretName": "dagster-tls"}]
