"""A small client for the tests' Kubernetes API server that keeps what the tests check: the status,
the body and the `Warning` headers (PodSecurity and unknown-field warnings arrive there)."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Where each kind the chart (and dagster-k8s) creates lives: kind -> (API path prefix, plural).
RESOURCES = {
    "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"),
    "Service": ("/api/v1", "services"),
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "Pod": ("/api/v1", "pods"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"),
    "Event": ("/api/v1", "events"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "ReplicaSet": ("/apis/apps/v1", "replicasets"),
    "Job": ("/apis/batch/v1", "jobs"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "Ingress": ("/apis/networking.k8s.io/v1", "ingresses"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
}


@dataclass
class Response:
    status: int
    body: dict[str, Any]
    warnings: list[str]


class KubeApiError(AssertionError):
    """The API server refused a request; the message carries its Status message."""


class KubeApi:
    """Bearer-token HTTPS requests to one API server (admin or a ServiceAccount's token)."""

    def __init__(
        self, server: str, token: str, ca_file: Path, client_cert: tuple[Path, Path] | None = None
    ) -> None:
        self.server = server
        self.token = token
        self.context = ssl.create_default_context(cafile=str(ca_file))
        if client_cert:
            self.context.load_cert_chain(str(client_cert[0]), str(client_cert[1]))

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Response:
        url = self.server + path + ("?" + urllib.parse.urlencode(params) if params else "")
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        request = urllib.request.Request(url, data=data, method=method)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as response:
                raw, status, headers = response.read(), response.status, response.headers
        except urllib.error.HTTPError as error:
            raw, status, headers = error.read(), error.code, error.headers
        try:
            parsed = json.loads(raw) if raw else {}
        except ValueError:
            parsed = {"message": raw.decode(errors="replace")}
        return Response(status, parsed, headers.get_all("Warning") or [])

    def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> dict[str, Any]:
        response = self.request(method, path, body, **kwargs)
        if response.status >= 300:
            raise KubeApiError(f"{method} {path}: {response.status} {response.body.get('message')}")
        return response.body

    def get(self, path: str, **params: str) -> dict[str, Any]:
        return self.ok("GET", path, params=params or None)

    @staticmethod
    def path(kind: str, namespace: str | None, name: str | None = None) -> str:
        prefix, plural = RESOURCES[kind]
        scope = f"/namespaces/{namespace}" if namespace else ""
        return f"{prefix}{scope}/{plural}" + (f"/{name}" if name else "")

    def items(self, kind: str, namespace: str, **params: str) -> list[dict[str, Any]]:
        return self.get(self.path(kind, namespace), **params)["items"]

    def strict_dry_run_apply(self, manifest: dict[str, Any], namespace: str) -> Response:
        """Server-side apply as a dry run with strict field validation: unknown or duplicate fields fail."""
        return self.request(
            "PATCH",
            self.path(manifest["kind"], namespace, manifest["metadata"]["name"]),
            yaml.safe_dump(manifest).encode(),
            params={"fieldManager": "op-tests", "fieldValidation": "Strict", "dryRun": "All", "force": "true"},
            content_type="application/apply-patch+yaml",
        )

    def create_namespace(self, name: str) -> None:
        """A namespace that enforces (and warns about) the restricted Pod Security Standard."""
        labels = {
            f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")
        }
        self.ok("POST", "/api/v1/namespaces", {"metadata": {"name": name, "labels": labels}})
        # The ServiceAccount controller makes `default` shortly after; pods that use it wait for it.
        wait_for(lambda: self.request("GET", self.path("ServiceAccount", name, "default")).status == 200,
                 f"ServiceAccount default in {name}")

    def delete_namespace(self, name: str) -> None:
        self.request("DELETE", f"/api/v1/namespaces/{name}")

    def service_account_token(self, namespace: str, name: str, seconds: int = 3600) -> str:
        """A token for a ServiceAccount through the TokenRequest API (what a pod's projected token is)."""
        body = self.ok(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
             "spec": {"expirationSeconds": seconds}},
        )
        return body["status"]["token"]


def wait_for(check, what: str, timeout: float = 30, interval: float = 0.2):
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
