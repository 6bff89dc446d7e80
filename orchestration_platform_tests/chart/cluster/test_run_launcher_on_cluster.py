"""K8sRunLauncher built from the instance config the chart installed, authenticated as the chart's
ServiceAccount (a TokenRequest token, what the daemon's pod gets): `launch_run` creates the run Job
on the real API server with the image, settings and secrets the chart promises, the Job controller
creates its pod under the restricted Pod Security Standard, and `terminate` deletes the Job.
The chart's Role is exactly enough: without one verb, launching or terminating fails."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestration_platform_tests.chart.cluster.conftest import HelmOnCluster
from orchestration_platform_tests.chart.cluster.control_plane import ControlPlane
from orchestration_platform_tests.chart.cluster.kube_api import KubeApi, wait_for
from orchestration_platform_tests.chart.cluster.workloads import assert_job_creates_its_pod
from orchestration_platform_tests.chart.conftest import RELEASE, VALUE_SETS
from orchestration_platform_tests.chart.pod_security import assert_restricted_pod

IMAGE = "registry.example.com/data/orchestration-platform:0.1.0"
FULLNAME = f"{RELEASE}-orchestration-platform"


@pytest.fixture
def prod_release(cluster_helm: HelmOnCluster, namespace: str) -> str:
    """The prod values set installed in the test's namespace."""
    cluster_helm.install(namespace, *VALUE_SETS["prod"])
    return namespace


@pytest.fixture
def launcher_kubeconfig(
    prod_release: str, admin_api: KubeApi, control_plane: ControlPlane, tmp_path: Path
) -> Path:
    """A kubeconfig with a token for the chart's ServiceAccount (the identity of daemon and webserver)."""
    token = admin_api.service_account_token(prod_release, FULLNAME)
    return control_plane.write_kubeconfig(tmp_path / "launcher.kubeconfig", token, prod_release)


@contextmanager
def _instance_with_chart_launcher(api: KubeApi, namespace: str, kubeconfig: Path) -> Iterator[Any]:
    from dagster._core.test_utils import instance_for_test

    instance_yaml = yaml.safe_load(
        api.get(KubeApi.path("ConfigMap", namespace, f"{FULLNAME}-instance"))["data"]["dagster.yaml"]
    )
    run_launcher = instance_yaml["run_launcher"]
    assert run_launcher["config"]["load_incluster_config"] is True
    # In the pod the launcher reads the mounted token; here the same ServiceAccount's token, from a file.
    config = {**run_launcher["config"], "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    with instance_for_test(overrides={"run_launcher": {**run_launcher, "config": config}}) as instance:
        yield instance


def _launch(instance: Any) -> Any:
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.launcher import LaunchRunContext
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster._core.test_utils import create_run_for_test

    # The code server reports its own image (DAGSTER_CURRENT_IMAGE): runs use exactly that one.
    origin = JobPythonOrigin(
        "__ASSET_JOB",
        RepositoryPythonOrigin(
            executable_path="python",
            code_pointer=ModuleCodePointer("orchestration_platform.definitions", "defs", working_directory=None),
            container_image=IMAGE,
        ),
    )
    run = create_run_for_test(instance, job_name="__ASSET_JOB", job_code_origin=origin)
    instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    return run


def _job_name(run: Any) -> str:
    from dagster_k8s.job import get_job_name_from_run_id

    return get_job_name_from_run_id(run.run_id)


def test_launch_run_creates_the_run_job_and_terminate_deletes_it(
    admin_api: KubeApi, prod_release: str, launcher_kubeconfig: Path
) -> None:
    namespace = prod_release
    with _instance_with_chart_launcher(admin_api, namespace, launcher_kubeconfig) as instance:
        run = _launch(instance)
        job = admin_api.get(KubeApi.path("Job", namespace, _job_name(run)))

        pod = job["spec"]["template"]["spec"]
        assert_restricted_pod(pod, where="run pod")
        [container] = pod["containers"]
        assert container["image"] == IMAGE
        assert container["args"][:5] == ["python", "-m", "dagster", "api", "execute_run"]
        env_from = {next(iter(source)): next(iter(source.values()))["name"] for source in container["envFrom"]}
        assert env_from == {
            "configMapRef": f"{FULLNAME}-platform-env",
            "secretRef": "orchestration-platform-secrets",
        }
        env = {e["name"]: e for e in container["env"]}
        assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "dagster-postgresql",
            "key": "postgresql-password",
        }
        assert container["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "6Gi"}}
        assert pod["serviceAccountName"] == FULLNAME
        labels = job["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == "run-worker"  # what the NetworkPolicies select
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] == 172800
        assert {m["mountPath"] for m in container["volumeMounts"]} == {
            "/opt/dagster/dagster_home",
            "/tmp",
            "/var/lib/orchestration-platform",
        }
        data = next(v for v in pod["volumes"] if v["name"] == "platform-data")
        assert data["persistentVolumeClaim"]["claimName"] == "orchestration-platform-data"

        # The Job controller creates the run pod: admitted in the restricted namespace, right account.
        run_pod = assert_job_creates_its_pod(admin_api, namespace, _job_name(run))
        assert run_pod["spec"]["serviceAccountName"] == FULLNAME

        assert instance.run_launcher.terminate(run.run_id)
        wait_for(
            lambda: admin_api.request("GET", KubeApi.path("Job", namespace, _job_name(run))).status == 404
            and not admin_api.items("Pod", namespace, labelSelector=f"job-name={_job_name(run)}"),
            "the run Job and its pod to be deleted",
        )
        assert "Run was terminated successfully." in _engine_messages(instance, run)


def _engine_messages(instance: Any, run: Any) -> list[str]:
    return [entry.message.removeprefix("[K8sRunLauncher] ") for entry in instance.all_logs(run.run_id)]


def _remove_verb(api: KubeApi, namespace: str, resource: str, verb: str) -> None:
    path = KubeApi.path("Role", namespace, f"{FULLNAME}-launcher")
    role = api.get(path)
    rules: list[dict[str, Any]] = role["rules"]
    [rule] = [r for r in rules if r["resources"] == [resource]]
    assert verb in rule["verbs"], f"the chart's Role has no {verb} on {resource}: {rules}"
    rule["verbs"].remove(verb)
    api.ok("PUT", path, role)


@pytest.mark.parametrize(
    ("resource", "verb", "step"),
    [("jobs", "create", "launch"), ("jobs", "delete", "terminate"), ("pods", "list", "terminate")],
)
def test_the_charts_role_is_exactly_enough(
    admin_api: KubeApi, prod_release: str, launcher_kubeconfig: Path, resource: str, verb: str, step: str
) -> None:
    """Without `verb` on `resource`, the launcher's `step` is refused by RBAC."""
    namespace = prod_release
    _remove_verb(admin_api, namespace, resource, verb)
    with _instance_with_chart_launcher(admin_api, namespace, launcher_kubeconfig) as instance:
        if step == "launch":
            with pytest.raises(Exception) as error:  # dagster-k8s wraps the API's 403
                _launch(instance)
            cause = error.value.__cause__
            assert getattr(cause, "status", None) == 403, repr(error.value)
            message = json.loads(cause.body)["message"]
            assert f'cannot {verb} resource "{resource}"' in message, message
            assert f"system:serviceaccount:{namespace}:{FULLNAME}" in message  # as the chart's account
            assert not admin_api.items("Job", namespace)
            return
        run = _launch(instance)
        assert not instance.run_launcher.terminate(run.run_id)
        assert admin_api.request("GET", KubeApi.path("Job", namespace, _job_name(run))).status == 200
        assert "Run was terminated successfully." not in _engine_messages(instance, run)
