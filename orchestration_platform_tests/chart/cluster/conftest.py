"""The `kubernetes` tests: the chart and the platform's Kubernetes paths against a real API server.

The session starts etcd, kube-apiserver and kube-controller-manager once (control_plane.py; the
first run builds the binaries, ~15 min, then they are cached). Each test gets its own namespace
that enforces the restricted Pod Security Standard. Pods are admitted and created but never run
(no kubelet): played_node.py plays the node where a test needs a pod to finish.

Your own cluster instead: OP_KUBERNETES_TESTS_USE_KUBECONFIG=1 KUBECONFIG=<cluster-admin kubeconfig>
(docs/deploy.md); the tests that play the node are skipped there, since a real kubelet runs pods.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestration_platform.settings import REPO_ROOT
from orchestration_platform_tests.chart.cluster.control_plane import (
    ControlPlane,
    connect,
    external_kubeconfig,
    start_control_plane,
)
from orchestration_platform_tests.chart.cluster.kube_api import KubeApi
from orchestration_platform_tests.chart.conftest import CHART_DIR, RELEASE, VALUE_SETS, Helm

# Figures for BENCHMARKS.md (benchmarks/kubernetes_figures.py reads them): written at session end.
TIMINGS_FILE = REPO_ROOT / ".local" / "kubernetes-timings.json"
_timings: dict[str, Any] = {"helm_install_s": {}}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.kubernetes)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager for the session; stopped by PID at the end."""
    suite_started = time.monotonic()
    own_cluster = external_kubeconfig()
    if own_cluster is not None:
        yield connect(own_cluster, tmp_path_factory.mktemp("kube"))
        return
    plane = start_control_plane(tmp_path_factory.mktemp("kube"))
    _timings["control_plane_start_s"] = round(plane.started_in_s, 2)
    try:
        yield plane
    finally:
        plane.stop()
        _timings["suite_s"] = round(time.monotonic() - suite_started, 1)
        TIMINGS_FILE.parent.mkdir(exist_ok=True)
        TIMINGS_FILE.write_text(json.dumps(_timings, indent=2))


@pytest.fixture(scope="session")
def admin_api(control_plane: ControlPlane) -> KubeApi:
    """The API as cluster admin (group system:masters)."""
    return KubeApi(control_plane.server, control_plane.admin_token, control_plane.ca_file, control_plane.client_cert)


@pytest.fixture
def namespace(admin_api: KubeApi, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace enforcing the restricted Pod Security Standard, deleted after the test."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    admin_api.create_namespace(name)
    yield name
    admin_api.delete_namespace(name)


class HelmOnCluster(Helm):
    """The real Helm 4 against the session's API server, as the admin."""

    def __init__(self, binary: Path, workdir: Path, kubeconfig: Path) -> None:
        super().__init__(binary, workdir, kubeconfig=kubeconfig, timeout_s=180)
        self.last_install_s = 0.0

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.run(*args)
        assert result.returncode == 0, f"helm {' '.join(args[:2])} failed:\n{result.stderr}"
        return result

    def install(
        self, namespace: str, files: tuple[str, ...] = (), values: Mapping[str, Any] | None = None,
        release: str = RELEASE,
    ) -> subprocess.CompletedProcess[str]:
        """`helm install` (never --wait: nothing becomes Ready without a kubelet); timed for BENCHMARKS.md."""
        started = time.monotonic()
        result = self.ok("install", release, str(CHART_DIR), "--namespace", namespace,
                         *self.values_args(files, values))
        self.last_install_s = time.monotonic() - started
        return result

    def upgrade(
        self, namespace: str, files: tuple[str, ...] = (), values: Mapping[str, Any] | None = None,
        release: str = RELEASE,
    ) -> subprocess.CompletedProcess[str]:
        return self.ok("upgrade", release, str(CHART_DIR), "--namespace", namespace,
                       *self.values_args(files, values))

    def manifests(self, namespace: str, release: str = RELEASE) -> list[dict[str, Any]]:
        """What the release's current revision installed, as Helm recorded it."""
        text = self.ok("get", "manifest", release, "--namespace", namespace).stdout
        return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="session")
def cluster_helm(helm_bin: Path, control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> HelmOnCluster:
    return HelmOnCluster(helm_bin, tmp_path_factory.mktemp("helm-cluster"), control_plane.kubeconfig)


def record_install_time(value_set: str, seconds: float) -> None:
    _timings["helm_install_s"][value_set] = round(seconds, 2)


__all__ = ["VALUE_SETS", "HelmOnCluster", "record_install_time"]
