"""Checks on what the controllers did with a release: every Deployment got a ReplicaSet, every
ReplicaSet (and Job) created its pods, and no event reports an admission or ServiceAccount error."""

from __future__ import annotations

import time
from typing import Any

from orchestration_platform_tests.chart.cluster.kube_api import KubeApi

# Event reasons by which a controller says it could not create a pod (PodSecurity, ServiceAccount, quota).
FAILED_CREATE = {"FailedCreate", "FailedCreatePodSandBox"}


def failed_create_events(api: KubeApi, namespace: str) -> list[str]:
    return [
        f"{e['involvedObject']['kind']}/{e['involvedObject']['name']}: {e['reason']}: {e['message']}"
        for e in api.items("Event", namespace)
        if e.get("reason") in FAILED_CREATE
    ]


def _owned_by(obj: dict[str, Any], kind: str, uid: str) -> bool:
    return any(ref["kind"] == kind and ref["uid"] == uid for ref in obj["metadata"].get("ownerReferences", []))


def assert_deployments_create_their_pods(api: KubeApi, namespace: str, timeout: float = 45) -> list[dict]:
    """Wait until each Deployment's current ReplicaSet has created all its pods; fail on FailedCreate.

    Returns the pods. The pods stay Pending (no kubelet): creation is what admission decides."""
    deadline = time.monotonic() + timeout
    while True:
        errors = failed_create_events(api, namespace)
        assert not errors, f"controllers could not create pods in {namespace}:\n" + "\n".join(errors)
        deployments = api.items("Deployment", namespace)
        replica_sets = api.items("ReplicaSet", namespace)
        pods = api.items("Pod", namespace)
        missing = []
        for deployment in deployments:
            uid, generation = deployment["metadata"]["uid"], deployment["metadata"]["generation"]
            wanted = deployment["spec"].get("replicas", 1)
            current = [
                rs for rs in replica_sets
                if _owned_by(rs, "Deployment", uid) and rs["spec"].get("replicas", 0) > 0
            ]
            observed = deployment.get("status", {}).get("observedGeneration", 0) >= generation
            created = sum(rs.get("status", {}).get("replicas", 0) for rs in current)
            if not observed or not current or created < wanted:
                missing.append(f"Deployment {deployment['metadata']['name']}: {created}/{wanted} pods")
        if not missing:
            return pods
        if time.monotonic() > deadline:
            raise AssertionError(f"pods not created after {timeout} s in {namespace}: {missing}")
        time.sleep(0.3)


def assert_job_creates_its_pod(api: KubeApi, namespace: str, job: str, timeout: float = 30) -> dict:
    """Wait until the Job controller has created the Job's pod (it stays Pending: no kubelet)."""
    deadline = time.monotonic() + timeout
    while True:
        errors = failed_create_events(api, namespace)
        assert not errors, f"the Job controller could not create pods in {namespace}:\n" + "\n".join(errors)
        pods = api.items("Pod", namespace, labelSelector=f"job-name={job}")
        if pods:
            return pods[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"Job {job}: no pod after {timeout} s")
        time.sleep(0.3)
