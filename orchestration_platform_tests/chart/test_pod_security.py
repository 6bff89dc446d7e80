"""Every pod the chart renders, in every value set, is restricted, resourced and probed."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from orchestration_platform_tests.chart.conftest import VALUE_SETS, Helm, find
from orchestration_platform_tests.chart.pod_security import assert_probed, assert_restricted_pod

# Which probes each container must have: the daemon serves no traffic, so no readiness.
PROBES = {
    "dagster-daemon": ("livenessProbe", "startupProbe"),
    # A Go binary up in well under a second: readiness and liveness are enough.
    "oauth2-proxy": ("readinessProbe", "livenessProbe"),
    # Its liveness probe allows 6 x 30 s before a restart, which covers the app's start.
    "review": ("readinessProbe", "livenessProbe"),
}
ALL_PROBES = ("readinessProbe", "livenessProbe", "startupProbe")


def test_every_pod_is_restricted_resourced_and_probed(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, manifests = rendered
    workloads = [
        m for m in manifests if m["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"}
    ]
    assert workloads
    for workload in workloads:
        pod = workload["spec"] if workload["kind"] == "Pod" else workload["spec"]["template"]["spec"]
        where = f"{name}: {workload['kind']}/{workload['metadata']['name']}"
        assert_restricted_pod(pod, where)
        for container in pod["containers"]:
            assert_probed(container, where, PROBES.get(container["name"], ALL_PROBES))


def test_only_pods_that_call_the_kubernetes_api_get_a_token(helm: Helm) -> None:
    manifests = helm.template(*VALUE_SETS["default"])
    tokens = {
        m["metadata"]["name"].removeprefix("op-orchestration-platform-"): m["spec"]["template"]["spec"].get(
            "automountServiceAccountToken"
        )
        for m in manifests
        if m["kind"] == "Deployment"
    }
    assert tokens == {
        "webserver": True,
        "daemon": True,
        "orchestration-platform": False,
        "model-serving": False,
    }
    for account in (m for m in manifests if m["kind"] == "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False, account["metadata"]["name"]


def test_the_check_catches_a_weakened_pod(helm: Helm) -> None:
    """assert_restricted_pod is not a formality: each weakening is reported."""
    pod = find(helm.template(*VALUE_SETS["default"]), "Deployment", "-webserver")["spec"]["template"]["spec"]
    weakenings = {
        "root": lambda p: p["securityContext"].update(runAsNonRoot=False),
        "escalation": lambda p: p["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
        "caps": lambda p: p["containers"][0]["securityContext"].update(capabilities={"drop": ["NET_RAW"]}),
        "rw root": lambda p: p["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False),
        "no limits": lambda p: p["containers"][0]["resources"].pop("limits"),
        "seccomp": lambda p: p["securityContext"].pop("seccompProfile"),
    }
    for label, weaken in weakenings.items():
        weak = copy.deepcopy(pod)
        weaken(weak)
        with pytest.raises(AssertionError):
            assert_restricted_pod(weak, label)
