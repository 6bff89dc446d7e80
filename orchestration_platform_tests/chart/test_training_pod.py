"""The training pod spec (lib/ml/training_pod.py) that PipesK8sClient runs: image, settings, secrets,
resources and the restricted posture, checked on the pod dagster-k8s actually builds from it."""

from __future__ import annotations

import kubernetes
import kubernetes_validate
import pytest
from dagster_k8s.pipes import build_pod_body

from orchestration_platform.lib.ml.training_pod import TrainingPodSpecError, training_pod_spec
from orchestration_platform_tests.chart.conftest import KUBERNETES_VERSION, VALUE_SETS, Helm, find
from orchestration_platform_tests.chart.pod_security import assert_restricted_pod

IMAGE = "registry.example.com/data/orchestration-platform:0.1.0"


def _spec(**overrides: object) -> dict:
    arguments: dict = {
        "image": IMAGE,
        "secret_name": "orchestration-platform-secrets",
        "service_account": "op-orchestration-platform-training",
        **overrides,
    }
    return training_pod_spec(**arguments)


def test_training_pod_runs_the_training_entry_point_with_the_platform_secret() -> None:
    spec = _spec(cpu="2", memory="4Gi", env={"TRAINING_RUN": "nightly", "DAGSTER_DEPLOYMENT": "prod"})
    [container] = spec["containers"]
    assert container["image"] == IMAGE
    assert container["command"] == ["python", "-m", "orchestration_platform.training"]
    assert container["envFrom"] == [{"secretRef": {"name": "orchestration-platform-secrets"}}]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["TRAINING_RUN"] == "nightly" and env["DAGSTER_DEPLOYMENT"] == "prod"
    assert env["HOME"] == "/tmp"  # read-only root: libraries that write to ~ get the emptyDir
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    assert spec["serviceAccountName"] == "op-orchestration-platform-training"
    assert spec["automountServiceAccountToken"] is False
    assert spec["restartPolicy"] == "Never"
    assert_restricted_pod(spec, "training pod")


def test_caller_env_overrides_the_defaults_without_duplicates() -> None:
    container = _spec(env={"HOME": "/tmp/home"})["containers"][0]
    names = [item["name"] for item in container["env"]]
    assert len(names) == len(set(names))
    assert {item["name"]: item["value"] for item in container["env"]}["HOME"] == "/tmp/home"


def test_the_pod_pipes_builds_from_it_is_valid_kubernetes() -> None:
    """PipesK8sClient.run(base_pod_spec=...) goes through build_pod_body: the result is a valid Pod."""
    pod = build_pod_body(
        pod_name="dagster-training-abc123",
        image=None,
        command=None,
        env_vars={"DAGSTER_PIPES_CONTEXT": "e30=", "DAGSTER_PIPES_MESSAGES": "e30="},
        base_pod_meta={"labels": {"app.kubernetes.io/component": "training"}},
        base_pod_spec=_spec(),
    )
    manifest = kubernetes.client.ApiClient().sanitize_for_serialization(pod)
    manifest = {"apiVersion": "v1", "kind": "Pod", **manifest}
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    [container] = manifest["spec"]["containers"]
    assert container["name"] == "training"  # the first container is the one Pipes talks to
    assert container["image"] == IMAGE
    env = {item["name"] for item in container["env"]}
    assert {"DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES", "HOME", "TMPDIR"} <= env
    assert manifest["metadata"]["labels"]["app.kubernetes.io/name"] == "dagster"  # NetworkPolicy selector
    assert_restricted_pod(manifest["spec"], "training pod via Pipes")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"image": ""}, "image=''"),
        ({"image": "registry.example.com/op:latest"}, "no pinned tag"),
        ({"image": "registry.example.com:5000/op"}, "no pinned tag"),
        ({"secret_name": "Platform_Secrets"}, "secret_name='Platform_Secrets'"),
        ({"service_account": ""}, "service_account=''"),
        ({"cpu": "two"}, "cpu='two'"),
        ({"memory": "4 GB"}, "memory='4 GB'"),
        ({"env": {"1BAD": "x"}}, "env name='1BAD'"),
        ({"env": {"EPOCHS": 10}}, "EPOCHS=10 is a int"),
        ({"data_volume_claim": "Shared Data"}, "data_volume_claim='Shared Data'"),
        ({"data_dir": "/tmp"}, "data_dir='/tmp'"),
        ({"data_dir": "relative/dir"}, "data_dir='relative/dir'"),
    ],
)
def test_bad_arguments_fail_with_the_argument_and_the_fix(overrides: dict, message: str) -> None:
    with pytest.raises(TrainingPodSpecError, match="training pod") as error:
        _spec(**overrides)
    assert message in str(error.value)


def test_the_shared_data_claim_carries_model_files_to_serving(helm: Helm) -> None:
    """Training writes model files under PLATFORM_DATA_DIR; serving reads them from the same claim."""
    platform_env = find(helm.template(*VALUE_SETS["prod"]), "ConfigMap", "-platform-env")["data"]
    spec = _spec(
        data_volume_claim=platform_env["PLATFORM_DATA_CLAIM"], data_dir=platform_env["PLATFORM_DATA_DIR"]
    )
    [container] = spec["containers"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts["/var/lib/orchestration-platform"]]["persistentVolumeClaim"] == {
        "claimName": "orchestration-platform-data"
    }
    assert {e["name"]: e["value"] for e in container["env"]}[
        "PLATFORM_DATA_DIR"
    ] == "/var/lib/orchestration-platform"
    serving = find(helm.template(*VALUE_SETS["prod"]), "Deployment", "-model-serving")["spec"]["template"][
        "spec"
    ]
    serving_mount = next(m for m in serving["containers"][0]["volumeMounts"] if m["name"] == "platform-data")
    assert serving_mount == {
        "name": "platform-data",
        "mountPath": "/var/lib/orchestration-platform",
        "readOnly": True,
    }
    assert next(v for v in serving["volumes"] if v["name"] == "platform-data")["persistentVolumeClaim"] == {
        "claimName": "orchestration-platform-data"
    }


def test_without_a_claim_the_data_dir_is_scratch_space() -> None:
    volumes = {v["name"]: v for v in _spec()["volumes"]}
    assert "emptyDir" in volumes["platform-data"]


def test_a_digest_pinned_image_is_accepted() -> None:
    image = "registry.example.com/op@sha256:" + "a" * 64
    assert _spec(image=image)["containers"][0]["image"] == image
