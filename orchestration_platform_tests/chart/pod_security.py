"""The restricted Pod Security Standard plus the platform's own rules, as one check for any pod spec
(chart Deployments, run pods built by dagster-k8s, training pods from lib/ml/training_pod.py)."""

from __future__ import annotations

from typing import Any

WRITABLE_EMPTY_DIRS = {"emptyDir", "persistentVolumeClaim"}


def assert_restricted_pod(pod: dict[str, Any], where: str) -> None:
    """Fail with `where` and the rule when the pod spec is not restricted, resourced and probed as required."""
    pod_sc = pod.get("securityContext") or {}
    assert pod_sc.get("runAsNonRoot") is True, f"{where}: pod securityContext.runAsNonRoot must be true"
    assert (pod_sc.get("runAsUser") or 0) > 0, f"{where}: pod must run as a non-zero uid"
    assert (pod_sc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", (
        f"{where}: seccomp RuntimeDefault"
    )
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), (
        f"{where}: host namespaces"
    )
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for volume in volumes.values():
        assert "hostPath" not in volume, f"{where}: hostPath volume {volume['name']}"
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        name = f"{where}/{container['name']}"
        sc = container.get("securityContext") or {}
        assert sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation must be false"
        assert sc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem must be true"
        assert (sc.get("capabilities") or {}).get("drop") == ["ALL"], f"{name}: capabilities must drop ALL"
        assert not (sc.get("capabilities") or {}).get("add"), f"{name}: no added capabilities"
        assert not sc.get("privileged"), f"{name}: privileged"
        assert sc.get("runAsNonRoot", True) is not False, f"{name}: runAsNonRoot overridden to false"
        assert (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get(
            "type"
        ) == "RuntimeDefault", name
        resources = container.get("resources") or {}
        assert {"cpu", "memory"} <= set(resources.get("requests", {})), f"{name}: cpu and memory requests"
        assert "memory" in resources.get("limits", {}), f"{name}: a memory limit"
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        # A read-only root needs a writable /tmp (Python, uvicorn, pip caches all write there).
        assert "/tmp" in mounts, f"{name}: no writable /tmp"
        assert WRITABLE_EMPTY_DIRS & set(volumes[mounts["/tmp"]]), f"{name}: /tmp is not an emptyDir"


def assert_probed(container: dict[str, Any], where: str, probes: tuple[str, ...]) -> None:
    for probe in probes:
        spec = container.get(probe) or {}
        assert {"exec", "httpGet", "grpc", "tcpSocket"} & set(spec), (
            f"{where}/{container['name']}: no {probe}"
        )
