"""The chart lints, renders for every value set, and every manifest is valid Kubernetes."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from orchestration_platform_tests.chart.conftest import (
    KUBERNETES_VERSION,
    NAMESPACE,
    VALUE_SETS,
    Helm,
    find,
    instance_yaml,
)

# Settings that are credentials: they may only come from existing Secrets.
SECRET_NAMES = {
    "DAGSTER_PG_PASSWORD",
    "POSTGRES_URL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "ALERT_WEBHOOK_URL",
    "INGESTION_WAREHOUSE_URL",
}
URL_WITH_CREDENTIALS = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_helm_lint_strict_passes(helm: Helm, value_set: str) -> None:
    files, values = VALUE_SETS[value_set]
    result = helm.lint(files, values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


# The chart's kubeVersion floor, the version it targets, and the newest schemas available offline.
KUBERNETES_VERSIONS = ("1.29.0", KUBERNETES_VERSION, kubernetes_validate.latest_version())


@pytest.mark.parametrize("kubernetes_version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_for_the_supported_kubernetes_versions(
    rendered: tuple[str, list[dict[str, Any]]], kubernetes_version: str
) -> None:
    name, manifests = rendered
    assert manifests, f"{name}: nothing rendered"
    for manifest in manifests:
        where = f"{name}: {manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(manifest, kubernetes_version, strict=True)
        except kubernetes_validate.SchemaNotFoundError as error:  # an unknown kind/apiVersion is a failure
            pytest.fail(f"{where}: no schema for it in Kubernetes {kubernetes_version}: {error}")
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{where}: {error.message} at {list(error.path)}")


def test_strict_validation_catches_a_misspelled_field(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """The validator is really strict: the same Deployment with one typo is refused."""
    _, manifests = rendered
    deployment = find(manifests, "Deployment", "-webserver")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(unknown, KUBERNETES_VERSION, strict=True)


def test_the_default_set_renders_every_part(helm: Helm) -> None:
    files, values = VALUE_SETS["default"]
    manifests = helm.template(files, values)
    kinds = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    expected = {
        ("Deployment", "op-orchestration-platform-webserver"),
        ("Service", "op-orchestration-platform-webserver"),
        ("Deployment", "op-orchestration-platform-daemon"),
        ("Deployment", "op-orchestration-platform-orchestration-platform"),
        ("Service", "op-orchestration-platform-orchestration-platform"),
        ("Deployment", "op-orchestration-platform-model-serving"),
        ("Service", "op-orchestration-platform-model-serving"),
        ("HorizontalPodAutoscaler", "op-orchestration-platform-model-serving"),
        ("PodDisruptionBudget", "op-orchestration-platform-model-serving"),
        ("ConfigMap", "op-orchestration-platform-instance"),
        ("ConfigMap", "op-orchestration-platform-workspace-yaml"),
        ("ConfigMap", "op-orchestration-platform-platform-env"),
        ("ServiceAccount", "op-orchestration-platform"),
        ("ServiceAccount", "op-orchestration-platform-training"),
        ("Role", "op-orchestration-platform-launcher"),
        ("RoleBinding", "op-orchestration-platform-launcher"),
        ("NetworkPolicy", "op-orchestration-platform-default-deny"),
    }
    assert expected <= kinds, sorted(expected - kinds)
    assert not any(m["kind"] in {"Secret", "Ingress"} for m in manifests), (
        "no Secret is ever rendered; Ingress is opt-in"
    )


def test_the_code_server_runs_dagster_api_grpc_with_a_grpc_health_check(helm: Helm) -> None:
    manifests = helm.template(*VALUE_SETS["default"])
    container = find(manifests, "Deployment", "-orchestration-platform")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["command"] + container["args"] == [
        "dagster",
        "api",
        "grpc",
        "-m",
        "orchestration_platform.definitions",
        "-a",
        "defs",
        "-h",
        "0.0.0.0",
        "-p",
        "3030",
    ]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["exec"]["command"] == ["dagster", "api", "grpc-health-check", "-p", "3030"]
    env = {e["name"]: e for e in container["env"]}
    assert env["DAGSTER_CURRENT_IMAGE"]["value"] == "registry.example.com/data/orchestration-platform:0.1.0"
    # Sensor ticks run here on the daemon's instance, whose storage password comes from the Secret.
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "dagster-postgresql",
        "key": "postgresql-password",
    }


def test_workspace_points_at_the_code_server_service(helm: Helm) -> None:
    manifests = helm.template(*VALUE_SETS["default"])
    workspace = yaml.safe_load(find(manifests, "ConfigMap", "-workspace-yaml")["data"]["workspace.yaml"])
    service = find(manifests, "Service", "-orchestration-platform")
    assert workspace["load_from"] == [
        {
            "grpc_server": {
                "host": service["metadata"]["name"],
                "port": service["spec"]["ports"][0]["port"],
                "location_name": "orchestration-platform",
            }
        }
    ]


def test_pods_roll_when_the_instance_or_workspace_config_changes(helm: Helm) -> None:
    files, values = VALUE_SETS["default"]
    before = helm.template(files, values)
    after = helm.template(
        files,
        {
            **values,
            "dagsterDaemon": {
                "runCoordinator": {"config": {"queuedRunCoordinator": {"maxConcurrentRuns": 3}}}
            },
        },
    )
    for suffix in ("-webserver", "-daemon"):
        old = find(before, "Deployment", suffix)["spec"]["template"]["metadata"]["annotations"]
        new = find(after, "Deployment", suffix)["spec"]["template"]["metadata"]["annotations"]
        assert old["checksum/dagster-instance"] != new["checksum/dagster-instance"], suffix
        assert old["checksum/dagster-workspace"] == new["checksum/dagster-workspace"], suffix
    assert instance_yaml(after)["concurrency"]["runs"]["max_concurrent_runs"] == 3


def test_credentials_only_come_from_existing_secrets(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    """No password or URL with credentials is ever a plain value in a rendered manifest."""
    name, manifests = rendered
    for manifest in manifests:
        for pod in _pod_specs(manifest):
            for container in pod["containers"]:
                for env in container.get("env", []):
                    if env["name"] in SECRET_NAMES:
                        assert "value" not in env, f"{name}: {env['name']} given as a plain value"
                        assert env["valueFrom"]["secretKeyRef"]["name"]
        if manifest["kind"] == "ConfigMap":
            data = manifest["data"]
            assert not SECRET_NAMES & set(data), (
                f"{name}: a secret setting in ConfigMap {manifest['metadata']['name']}"
            )
            for key, text in data.items():
                assert not URL_WITH_CREDENTIALS.search(text), (
                    f"{name}: credentials in {manifest['metadata']['name']}/{key}"
                )
    instance = instance_yaml(manifests)
    assert instance["run_storage"]["config"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}


def test_ingress_is_off_by_default_and_on_when_asked(helm: Helm) -> None:
    assert not [m for m in helm.template(*VALUE_SETS["default"]) if m["kind"] == "Ingress"]
    ingress = find(helm.template(*VALUE_SETS["ingress"]), "Ingress", "-webserver")
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "dagster.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == "op-orchestration-platform-webserver"
    assert ingress["spec"]["tls"] == [{"hosts": ["dagster.example.com"], "secretName": "dagster-tls"}]
    assert "nginx.ingress.kubernetes.io/auth-url" in ingress["metadata"]["annotations"]


def test_rbac_is_limited_to_jobs_pods_and_pod_logs(helm: Helm) -> None:
    manifests = helm.template(*VALUE_SETS["default"])
    assert not [m for m in manifests if m["kind"] in {"ClusterRole", "ClusterRoleBinding"}]
    role = find(manifests, "Role", "-launcher")
    granted = {
        (group, resource)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert granted == {
        ("batch", "jobs"),
        ("batch", "jobs/status"),
        ("", "pods"),
        ("", "pods/log"),
        ("", "pods/status"),
    }
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        assert not set(rule["verbs"]) & {"update", "patch", "escalate", "bind", "impersonate"}
    binding = find(manifests, "RoleBinding", "-launcher")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "op-orchestration-platform", "namespace": NAMESPACE}
    ]


def test_network_policies_deny_by_default_and_allow_the_needed_flows(helm: Helm) -> None:
    manifests = helm.template(*VALUE_SETS["prod"])
    policies = {
        m["metadata"]["name"].removeprefix("op-orchestration-platform-"): m["spec"]
        for m in manifests
        if m["kind"] == "NetworkPolicy"
    }
    deny = policies["default-deny"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns_ports = {(p["protocol"], p["port"]) for p in policies["allow-dns"]["egress"][0]["ports"]}
    assert dns_ports == {("UDP", 53), ("TCP", 53)}
    code_server = policies["code-server"]
    callers = {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for peer in code_server["ingress"][0]["from"]
    }
    assert callers == {"dagster-webserver", "dagster-daemon"}  # run pods load code from their image
    assert code_server["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 3030}]
    # Only the run workers (Pipes) and the webserver/daemon (launcher) reach the API server.
    assert policies["run-worker-api"]["egress"][0]["to"] == [{"ipBlock": {"cidr": "10.96.0.1/32"}}]
    assert policies["webserver"]["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]
    # Run and training pods reach only the listed external peers and ports.
    external = policies["dagster-pods"]["egress"][0]
    assert external["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}, {"ipBlock": {"cidr": "10.30.0.10/32"}}]
    assert {p["port"] for p in external["ports"]} == {5432, 9092, 443}
    assert policies["dagster-pods"]["ingress"] == []
    serving_from = policies["model-serving"]["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "dagster"}}} in serving_from


def _pod_specs(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    if manifest["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        return [manifest["spec"]["template"]["spec"]]
    if manifest["kind"] == "Pod":
        return [manifest["spec"]]
    return []


def test_install_notes_say_the_ui_has_no_login(helm: Helm) -> None:
    notes = helm.install_notes(*VALUE_SETS["default"])
    assert "no login" in notes
    assert "port-forward svc/op-orchestration-platform-webserver" in notes
    notes = helm.install_notes(*VALUE_SETS["ingress"])
    assert "https://dagster.example.com/" in notes and "authenticating proxy" in notes
