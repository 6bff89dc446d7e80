"""Every values set installed on a real API server in a namespace enforcing the restricted Pod
Security Standard: each object accepted with strict field validation and no warnings, then
`helm install`, `helm upgrade` with changed values and `helm rollback`, and after each step every
ReplicaSet creates its pods (no PodSecurity, ServiceAccount or other admission error)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from orchestration_platform_tests.chart.cluster.conftest import HelmOnCluster, record_install_time
from orchestration_platform_tests.chart.cluster.kube_api import KubeApi
from orchestration_platform_tests.chart.cluster.workloads import assert_deployments_create_their_pods
from orchestration_platform_tests.chart.conftest import CHART_DIR, RELEASE, VALUE_SETS

UPGRADE = {
    "image": {"tag": "0.2.0"},
    "platform": {"env": {"UPGRADED_BY": "helm-upgrade"}, "settings": {"mlConsumers": 3}},
}


def _render(helm: HelmOnCluster, namespace: str, files: tuple[str, ...], values: Any) -> list[dict[str, Any]]:
    text = helm.ok("template", RELEASE, str(CHART_DIR), "--namespace", namespace,
                   *helm.values_args(files, values)).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _images(api: KubeApi, namespace: str) -> dict[str, set[str]]:
    return {
        d["metadata"]["name"]: {c["image"] for c in d["spec"]["template"]["spec"]["containers"]}
        for d in api.items("Deployment", namespace)
    }


def _no_warnings(result_stderr: str, step: str) -> None:
    lines = [line for line in result_stderr.splitlines() if "warning" in line.lower() or "PodSecurity" in line]
    assert not lines, f"{step} printed warnings:\n" + "\n".join(lines)


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_install_upgrade_and_rollback_on_a_restricted_namespace(
    value_set: str, cluster_helm: HelmOnCluster, admin_api: KubeApi, namespace: str
) -> None:
    files, values = VALUE_SETS[value_set]
    manifests = _render(cluster_helm, namespace, files, values)

    # Each object, as the server sees it: strict field validation, no PodSecurity warning.
    for manifest in manifests:
        where = f"{value_set}: {manifest['kind']}/{manifest['metadata']['name']}"
        response = admin_api.strict_dry_run_apply(manifest, namespace)
        assert response.status < 300, f"{where} refused: {response.body.get('message')}"
        assert not response.warnings, f"{where}: {response.warnings}"

    install = cluster_helm.install(namespace, files, values)
    record_install_time(value_set, cluster_helm.last_install_s)
    _no_warnings(install.stderr, "helm install")
    installed = {(m["kind"], m["metadata"]["name"]) for m in cluster_helm.manifests(namespace)}
    assert installed == {(m["kind"], m["metadata"]["name"]) for m in manifests}
    for kind, name in installed:
        admin_api.get(KubeApi.path(kind, namespace, name))  # every object exists on the server
    assert_deployments_create_their_pods(admin_api, namespace)
    before = _images(admin_api, namespace)
    platform_env = KubeApi.path("ConfigMap", namespace, f"{RELEASE}-orchestration-platform-platform-env")
    installed_consumers = admin_api.get(platform_env)["data"]["ML_CONSUMERS"]

    # Upgrade with changed values: new image tag and one more setting; new ReplicaSets create pods.
    upgrade = cluster_helm.upgrade(namespace, files, _merged(values, files))
    _no_warnings(upgrade.stderr, "helm upgrade")
    after = _images(admin_api, namespace)
    assert after.keys() == before.keys()
    # The platform's image (the code server's) moves to the new tag everywhere; others (a sign-in
    # proxy) stay as they were.
    [platform_image] = before[f"{RELEASE}-orchestration-platform-orchestration-platform"]
    repository = platform_image.rsplit(":", 1)[0]
    for name, images in after.items():
        expected = {f"{repository}:0.2.0" if i == platform_image else i for i in before[name]}
        assert images == expected, f"{name} after upgrade: {images}"
    env = admin_api.get(platform_env)
    assert env["data"]["UPGRADED_BY"] == "helm-upgrade" and env["data"]["ML_CONSUMERS"] == "3"
    assert_deployments_create_their_pods(admin_api, namespace)

    # Rollback to the first revision: the images and settings of the install are back.
    rollback = cluster_helm.ok("rollback", RELEASE, "1", "--namespace", namespace)
    _no_warnings(rollback.stderr, "helm rollback")
    assert _images(admin_api, namespace) == before
    env = admin_api.get(platform_env)
    assert "UPGRADED_BY" not in env["data"] and env["data"]["ML_CONSUMERS"] == installed_consumers
    assert_deployments_create_their_pods(admin_api, namespace)
    history = yaml.safe_load(cluster_helm.ok("history", RELEASE, "--namespace", namespace, "-o", "yaml").stdout)
    assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "superseded"),
                                                               (3, "deployed")]


def _merged(values: dict[str, Any], files: tuple[str, ...]) -> dict[str, Any]:
    """The value set's own values plus UPGRADE (the image's repository stays; its tag changes)."""
    merged = yaml.safe_load(yaml.safe_dump(values)) or {}
    merged.setdefault("image", {})["tag"] = UPGRADE["image"]["tag"]
    merged.setdefault("platform", {}).setdefault("env", {}).update(UPGRADE["platform"]["env"])
    merged["platform"].setdefault("settings", {}).update(UPGRADE["platform"]["settings"])
    return merged


def test_the_server_checks_have_teeth(cluster_helm: HelmOnCluster, admin_api: KubeApi, namespace: str) -> None:
    """The dry-run check above is not a formality: a misspelled field is refused, a weakened pod warned
    about (and its pods refused by the namespace's enforce=restricted)."""
    files, values = VALUE_SETS["default"]
    webserver = next(
        m for m in _render(cluster_helm, namespace, files, values)
        if m["kind"] == "Deployment" and m["metadata"]["name"].endswith("-webserver")
    )  # fmt: skip
    typo = yaml.safe_load(yaml.safe_dump(webserver))
    container = typo["spec"]["template"]["spec"]["containers"][0]
    container["imagePulPolicy"] = container.pop("imagePullPolicy", "IfNotPresent")
    response = admin_api.strict_dry_run_apply(typo, namespace)
    assert response.status >= 400 and "imagePulPolicy" in str(response.body.get("message")), response.body

    weakened = yaml.safe_load(yaml.safe_dump(webserver))
    weakened["spec"]["template"]["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    response = admin_api.strict_dry_run_apply(weakened, namespace)
    assert response.status < 300, response.body  # a Deployment is admitted, with a warning
    assert any("PodSecurity" in w and "allowPrivilegeEscalation" in w for w in response.warnings), response.warnings
