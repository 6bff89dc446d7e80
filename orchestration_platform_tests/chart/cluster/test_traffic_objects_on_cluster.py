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


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert not selector.get("matchExpressions"), "the chart's selectors use matchLabels only"
    return all(labels.get(key) == value for key, value in (selector.get("matchLabels") or {}).items())


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
        selected = [p for p in release_pods if _selects(selector, p["metadata"]["labels"])]
        # Run and training pods come later (from Jobs / Pipes), so a policy may select only those.
        later = selector.get("matchLabels", {}).get("app.kubernetes.io/component") in {"run-worker", "training"}
        assert selected or later, f"NetworkPolicy {policy['metadata']['name']} selects no pod of {components}"


def test_the_disruption_budget_and_autoscaler_find_model_serving(
    admin_api: KubeApi, namespace: str, release_pods: list[dict[str, Any]]
) -> None:
    [pdb] = admin_api.items("PodDisruptionBudget", namespace)
    serving = [p for p in release_pods if _selects(pdb["spec"]["selector"], p["metadata"]["labels"])]
    assert serving and all(p["metadata"]["name"].startswith(f"{FULLNAME}-model-serving") for p in serving)
    # The disruption controller counts the pods the budget covers (none healthy: no kubelet here).
    covered = wait_for(
        lambda: admin_api.get(KubeApi.path("PodDisruptionBudget", namespace, pdb["metadata"]["name"]))
        .get("status", {}).get("expectedPods"),
        "the disruption controller to count the budget's pods",
    )
    assert covered == len(serving) == 2

    [hpa] = admin_api.items("HorizontalPodAutoscaler", namespace)
    target = hpa["spec"]["scaleTargetRef"]
    assert target["kind"] == "Deployment"
    admin_api.get(KubeApi.path("Deployment", namespace, target["name"]))

    def able_to_scale() -> dict[str, Any] | None:
        current = admin_api.get(KubeApi.path("HorizontalPodAutoscaler", namespace, hpa["metadata"]["name"]))
        conditions = {c["type"]: c for c in current.get("status", {}).get("conditions", [])}
        return conditions.get("AbleToScale")

    # The autoscaling controller found the Deployment's scale subresource (metrics: none here).
    condition = wait_for(able_to_scale, "the autoscaler to read its target", timeout=45)
    assert condition["status"] == "True", condition


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
    webserver = [p for p in release_pods if _selects({"matchLabels": service["spec"]["selector"]},
                                                     p["metadata"]["labels"])]  # fmt: skip
    assert webserver and all("-webserver-" in p["metadata"]["name"] for p in webserver)
    assert ingress["spec"]["tls"] == [{"hosts": ["dagster.example.com"], "secretName": "dagster-tls"}]
