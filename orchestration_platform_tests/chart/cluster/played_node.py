"""THE ONE STAND-IN of the `kubernetes` tests: this helper plays the node.

No kubelet and no container runtime run here, so nothing would ever schedule or run a pod. This
helper does the node's part through the real API server, and nothing else: it registers a Node,
binds a pending pod to it (what the scheduler does) and writes the pod's status as a finished
container (what the kubelet does): phase Succeeded or Failed with the container's exit code.
Everything on the other side (the API server, admission, the controllers, dagster-k8s) is real.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from orchestration_platform_tests.chart.cluster.kube_api import KubeApi

NODE_NAME = "played-node"


class PlayedNode:
    """Registers one Node and finishes pods on it (see the module docstring: it stands in for a kubelet)."""

    def __init__(self, api: KubeApi, name: str = NODE_NAME) -> None:
        self.api = api
        self.name = name

    def register(self) -> None:
        """Create the Node object once (idempotent)."""
        if self.api.request("GET", f"/api/v1/nodes/{self.name}").status == 200:
            return
        self.api.ok(
            "POST",
            "/api/v1/nodes",
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.name,
                                                              "labels": {"kubernetes.io/os": "linux"}}},
        )

    def bind(self, namespace: str, pod: str) -> None:
        """Bind a pending pod to this node, as the scheduler would."""
        self.api.ok(
            "POST",
            f"/api/v1/namespaces/{namespace}/pods/{pod}/binding",
            {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod},
             "target": {"apiVersion": "v1", "kind": "Node", "name": self.name}},
        )

    def finish(self, namespace: str, pod: str, exit_code: int) -> dict[str, Any]:
        """Report every container of the pod as terminated with `exit_code`, as the kubelet would."""
        body = self.api.get(f"/api/v1/namespaces/{namespace}/pods/{pod}")
        if not body["spec"].get("nodeName"):
            self.bind(namespace, pod)
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        statuses = [
            {
                "name": container["name"],
                "image": container["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                                         "startedAt": now, "finishedAt": now}},
            }
            for container in body["spec"]["containers"]
        ]
        status = {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "startTime": now,
            "containerStatuses": statuses,
        }
        return self.api.ok(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/pods/{pod}/status",
            {"status": status},
            content_type="application/merge-patch+json",
        )
