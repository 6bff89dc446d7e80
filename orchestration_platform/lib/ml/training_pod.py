"""The pod spec a training run gets on Kubernetes (the `base_pod_spec` of `PipesK8sClient.run`).

Pure data, no Dagster import: the ML assets pass the result to `PipesK8sClient.run(base_pod_spec=...)`,
and the chart tests check it against the same restricted pod-security rules as the chart's pods.
The first container is the one Pipes talks to, so it is the only container.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

TRAINING_COMMAND = ["python", "-m", "orchestration_platform.training"]
TRAINING_CONTAINER = "training"
DEFAULT_DATA_DIR = "/var/lib/orchestration-platform"
# The image's non-root user (see the Dockerfile); pods must not depend on the image's USER alone.
PLATFORM_UID = 10001

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Kubernetes resource quantities: plain or decimal number with an optional SI / binary suffix.
_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


class TrainingPodSpecError(ValueError):
    """An argument of `training_pod_spec` cannot make a valid pod; the message says which and how to fix it."""


def _check(name: str, value: str, pattern: re.Pattern[str], fix: str) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        raise TrainingPodSpecError(f"training pod: {name}={value!r} is not valid: {fix}")


def training_pod_spec(
    *,
    image: str,
    secret_name: str,
    service_account: str,
    cpu: str = "1",
    memory: str = "2Gi",
    env: Mapping[str, str] | None = None,
    data_volume_claim: str | None = None,
    data_dir: str = DEFAULT_DATA_DIR,
) -> dict[str, Any]:
    """Build the restricted pod spec that runs `python -m orchestration_platform.training`.

    - `image`: the platform image (the same one the run pods use), e.g. `registry/orchestration-platform:0.1.0`.
    - `secret_name`: the existing Secret with POSTGRES_URL and friends; all of its keys become env vars.
    - `service_account`: the ServiceAccount the pod runs as (its API token is not mounted: training
      does not call the Kubernetes API, Pipes reads its messages from the pod log).
    - `cpu` / `memory`: requested and limit (equal, so the training pod is never throttled below
      what it asked for nor evicted first).
    - `env`: extra plain (non-secret) environment variables.
    - `data_volume_claim`: the PersistentVolumeClaim shared with the code server, run pods and serving
      (the chart's `platform.dataVolume.existingClaim`, env PLATFORM_DATA_CLAIM), mounted at `data_dir`
      (PLATFORM_DATA_DIR) so that model files written here reach serving. None: a scratch emptyDir.
    """
    if not isinstance(image, str) or not image.strip() or any(c.isspace() for c in image):
        raise TrainingPodSpecError(
            f"training pod: image={image!r} is not an image reference: pass e.g. "
            "'ghcr.io/acme/orchestration-platform:0.1.0' (set TRAINING_IMAGE)"
        )
    if image.endswith(":latest") or ("@" not in image and ":" not in image.rsplit("/", 1)[-1]):
        raise TrainingPodSpecError(
            f"training pod: image={image!r} has no pinned tag: use an explicit version tag or a digest "
            "(':latest' or no tag runs whatever was pushed last)"
        )
    _check(
        "secret_name", secret_name, _DNS_SUBDOMAIN, "use the name of an existing Secret (lowercase DNS name)"
    )
    _check("service_account", service_account, _DNS_SUBDOMAIN, "use the name of an existing ServiceAccount")
    _check("cpu", cpu, _QUANTITY, "use a Kubernetes quantity such as '500m' or '2'")
    _check("memory", memory, _QUANTITY, "use a Kubernetes quantity such as '512Mi' or '4Gi'")
    if data_volume_claim is not None:
        _check(
            "data_volume_claim",
            data_volume_claim,
            _DNS_SUBDOMAIN,
            "use the name of an existing PersistentVolumeClaim",
        )
    if not isinstance(data_dir, str) or not data_dir.startswith("/") or data_dir.rstrip("/") in {"", "/tmp"}:
        raise TrainingPodSpecError(
            f"training pod: data_dir={data_dir!r} is not valid: use an absolute path other than / and /tmp "
            "(the PLATFORM_DATA_DIR of the image, /var/lib/orchestration-platform)"
        )
    extra_env = dict(env or {})
    for key, value in extra_env.items():
        _check("env name", key, _ENV_NAME, "use letters, digits and underscores, not starting with a digit")
        if not isinstance(value, str):
            raise TrainingPodSpecError(
                f"training pod: env {key}={value!r} is a {type(value).__name__}: pass strings only"
            )
    # TMPDIR/HOME point at the writable emptyDir because the root filesystem is read-only.
    env_list = [
        {"name": "HOME", "value": "/tmp"},
        {"name": "TMPDIR", "value": "/tmp"},
        {"name": "PLATFORM_DATA_DIR", "value": data_dir},
    ]
    env_list += [{"name": key, "value": value} for key, value in sorted(extra_env.items())]
    env_list = list({item["name"]: item for item in env_list}.values())  # caller's value wins
    data_volume: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": data_volume_claim}}
        if data_volume_claim
        else {"emptyDir": {"sizeLimit": "4Gi"}}
    )
    return {
        "serviceAccountName": service_account,
        "automountServiceAccountToken": False,
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": PLATFORM_UID,
            "runAsGroup": PLATFORM_UID,
            "fsGroup": PLATFORM_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": TRAINING_CONTAINER,
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": list(TRAINING_COMMAND),
                "envFrom": [{"secretRef": {"name": secret_name}}],
                "env": env_list,
                "resources": {
                    "requests": {"cpu": cpu, "memory": memory},
                    "limits": {"cpu": cpu, "memory": memory},
                },
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "runAsNonRoot": True,
                    "capabilities": {"drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "volumeMounts": [
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "platform-data", "mountPath": data_dir},
                ],
            }
        ],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
            {"name": "platform-data", **data_volume},
        ],
    }
