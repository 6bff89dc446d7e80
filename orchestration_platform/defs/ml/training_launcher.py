"""Where training runs: a Pipes subprocess (local, test) or a Pipes Kubernetes Job (prod).

Both run `python -m orchestration_platform.training`; only the launcher differs.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, Literal

import dagster as dg


class TrainingLauncher(dg.ConfigurableResource):
    """Launches the training entry point through Dagster Pipes and returns its reported results."""

    mode: Literal["subprocess", "kubernetes"] = "subprocess"
    image: str = ""
    namespace: str = "default"
    service_account: str = "orchestration-platform-training"
    secret_name: str = "orchestration-platform"
    cpu: str = "1"
    memory: str = "2Gi"
    data_volume_claim: str = ""  # the shared data PVC: model files must outlive the training pod
    data_dir: str = "/var/lib/orchestration-platform"

    def run(self, context: dg.AssetExecutionContext, *, extras: Mapping[str, Any], env: Mapping[str, str]):
        """Run training for `context`'s asset; `env` holds plain settings (secrets come from the environment/Secret)."""
        if self.mode == "subprocess":
            import os

            client = dg.PipesSubprocessClient()
            # The subprocess inherits this process's environment (POSTGRES_URL stays a secret there).
            return client.run(
                command=[sys.executable, "-m", "orchestration_platform.training"],
                context=context,
                extras=dict(extras),
                env={**os.environ, **env},
            )
        from dagster_k8s import PipesK8sClient

        from orchestration_platform.lib.ml.training_pod import training_pod_spec

        if not self.image:
            raise dg.Failure(
                "training in Kubernetes needs an image: set TRAINING_IMAGE to the platform image (pinned tag)"
            )
        pod_spec = training_pod_spec(
            image=self.image,
            secret_name=self.secret_name,
            service_account=self.service_account,
            cpu=self.cpu,
            memory=self.memory,
            env=dict(env),
            data_volume_claim=self.data_volume_claim or None,
            data_dir=self.data_dir,
        )
        return PipesK8sClient().run(
            context=context,
            image=self.image,
            namespace=self.namespace,
            base_pod_spec=pod_spec,
            extras=dict(extras),
        )
