"""The optional sign-in path of the chart, rendered offline: oauth2-proxy in front of the UI, the review
page reachable only through its sign-in sidecar, credentials only from Secrets, restricted pods, valid
manifests, and values that would leave the review page without sign-in refused."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from orchestration_platform_tests.chart.conftest import (
    KUBERNETES_VERSION,
    REQUIRED_VALUES,
    Helm,
    HelmError,
    find,
)
from orchestration_platform_tests.chart.pod_security import assert_probed, assert_restricted_pod

SSO_FILES = ("values-sso.yaml",)


@pytest.fixture(scope="module")
def sso(helm: Helm) -> list[dict[str, Any]]:
    return helm.template(SSO_FILES)


def _container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_values_sso_lints_and_every_manifest_is_valid(helm: Helm, sso) -> None:
    result = helm.lint(SSO_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    for manifest in sso:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_ui_is_reachable_only_through_oauth2_proxy(sso) -> None:
    proxy = find(sso, "Deployment", "-oauth2-proxy")
    args = _container(proxy, "oauth2-proxy")["args"]
    assert "--provider=oidc" in args and "--oidc-issuer-url=https://dex.example.com" in args
    assert "--upstream=http://op-orchestration-platform-webserver:80/" in args
    assert "--redirect-url=https://dagster.example.com/oauth2/callback" in args
    assert {"--allowed-group=data-platform", "--allowed-group=ml-approvers", "--pass-user-headers=true"} <= set(args)
    webserver_policy = find(sso, "NetworkPolicy", "-webserver")["spec"]["ingress"][0]["from"]
    assert webserver_policy == [{"podSelector": {"matchLabels": {"app.kubernetes.io/component": "oauth2-proxy"}}}]
    assert find(sso, "Service", "-oauth2-proxy")["spec"]["ports"][0]["targetPort"] == "sign-in"


def test_the_review_page_trusts_identity_only_from_its_sign_in_sidecar(sso) -> None:
    review = find(sso, "Deployment", "-review")
    app, sidecar = _container(review, "review"), _container(review, "oauth2-proxy")
    assert app["command"][-4:] == ["--host", "127.0.0.1", "--port", "8790"] and "ports" not in app
    env = _env(app)
    assert env["REVIEW_TRUSTED_PROXIES"] == "127.0.0.1/32" and "REVIEW_DEV_USER" not in env
    assert env["ML_APPROVER_GROUPS"] == "ml-approvers" and env["ML_APPROVALS_REQUIRED"] == "2"
    assert "--upstream=http://127.0.0.1:8790/" in sidecar["args"]
    assert "--redirect-url=https://review.example.com/oauth2/callback" in sidecar["args"]
    assert find(sso, "Service", "-review")["spec"]["ports"][0]["targetPort"] == "sign-in"
    policy = find(sso, "NetworkPolicy", "-review")["spec"]
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == [4180]


def test_credentials_come_only_from_secrets_and_pods_are_restricted(sso) -> None:
    for suffix in ("-oauth2-proxy", "-review"):
        deployment = find(sso, "Deployment", suffix)
        pod = deployment["spec"]["template"]["spec"]
        assert_restricted_pod(pod, deployment["metadata"]["name"])
        for container in pod["containers"]:
            assert_probed(container, deployment["metadata"]["name"], ("readinessProbe", "livenessProbe"))
            env = _env(container)
            for name in ("OAUTH2_PROXY_CLIENT_ID", "OAUTH2_PROXY_CLIENT_SECRET", "OAUTH2_PROXY_COOKIE_SECRET",
                         "REVIEW_SESSION_KEY"):  # fmt: skip
                if name in env:
                    assert env[name]["secretKeyRef"]["name"] == "orchestration-platform-sso", name
            assert not any("secret" in a.split("=")[0] and "=" in a for a in container.get("args", [])), container


def test_sso_is_off_by_default(helm: Helm) -> None:
    names = [m["metadata"]["name"] for m in helm.template((), REQUIRED_VALUES)]
    assert not [n for n in names if n.endswith(("-oauth2-proxy", "-review"))]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"review": {"enabled": True, "url": "https://review.example.com"}}, "sso"),
        ({"sso": {"enabled": True, "existingSecret": "s", "webserverUrl": "https://d.example.com"}}, "issuerUrl"),
        ({"sso": {"enabled": True, "issuerUrl": "http://dex.example.com", "existingSecret": "s",
                  "webserverUrl": "https://d.example.com"}}, "issuerUrl"),
        ({"review": {"enabled": True, "approvalsRequired": 0}}, "approvalsRequired"),
    ],
)
def test_values_that_would_weaken_the_sign_in_are_refused(helm: Helm, values, message) -> None:
    with pytest.raises(HelmError, match=message):
        helm.template((), {**REQUIRED_VALUES, **values})
