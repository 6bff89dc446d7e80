"""The model registry: MLflow's, with the platform's PostgreSQL as its backend store.

Each candidate is a registered version of one model name with its metrics, parameters and lineage
(the feature hours and their change sequences) as tags, and a `sha256` fingerprint of its files.
Approvals name a version AND its fingerprint, so a version whose files changed afterwards is a
mismatch that never deploys. Artifacts live under MLFLOW_ARTIFACT_ROOT (a directory locally, a
shared volume or object store in production).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "fraud_detector"
EXPERIMENT = "fraud_detector_training"
EVALUATION_TAG = "evaluation"  # "passed" | "worse": only "passed" versions are offered for approval
FINGERPRINT_TAG = "sha256"
# skops refuses unknown types on load; these are the scikit-learn internals our model class is made of.
SKOPS_TRUSTED_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
PIP_REQUIREMENTS = [
    "scikit-learn",
    "skops",
    "pandas",
    "numpy",
]  # given, so MLflow does not probe the environment


class RegistryError(LookupError):
    """A model version is missing or unusable; the message names it and says what to do."""


def mlflow_uri(postgres_url: str) -> str:
    """The SQLAlchemy URL MLflow needs for the same PostgreSQL (psycopg2 driver: see FACTS.md)."""
    for prefix in ("postgresql+psycopg2://", "postgresql+psycopg://", "postgresql://", "postgres://"):
        if postgres_url.startswith(prefix):
            return "postgresql+psycopg2://" + postgres_url[len(prefix) :]
    raise RegistryError("POSTGRES_URL must start with postgresql:// to hold the model registry")


def fingerprint_dir(path: Path) -> str:
    """sha256 over every file's relative path and bytes, in a stable order."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    fingerprint: str
    tags: dict[str, str]


class ModelRegistry:
    """Register, describe, tag and load versions of one model name."""

    def __init__(
        self, postgres_url: str, artifact_root: str | Path, model_name: str = DEFAULT_MODEL_NAME
    ) -> None:
        import mlflow
        from mlflow import MlflowClient

        self.uri = mlflow_uri(postgres_url)
        self.artifact_root = Path(artifact_root)
        self.model_name = model_name
        self._mlflow = mlflow
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def _experiment_id(self) -> str:
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        if experiment is not None:
            return experiment.experiment_id
        self.artifact_root.mkdir(parents=True, exist_ok=True)
        try:
            return self.client.create_experiment(
                EXPERIMENT, artifact_location=self.artifact_root.resolve().as_uri()
            )
        except Exception:  # created concurrently by another process
            return self.client.get_experiment_by_name(EXPERIMENT).experiment_id

    def register(
        self, model: Any, *, metrics: dict[str, float], params: dict[str, Any], tags: dict[str, str]
    ) -> RegisteredVersion:
        """Log `model` in a new run and register it as the next version, tagged and fingerprinted."""
        mlflow = self._mlflow
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        with mlflow.start_run(experiment_id=self._experiment_id()) as run:
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            mlflow.set_tags(tags)
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                registered_model_name=self.model_name,
                pip_requirements=PIP_REQUIREMENTS,
                skops_trusted_types=SKOPS_TRUSTED_TYPES,
            )
        version = str(info.registered_model_version)
        fingerprint = self.compute_fingerprint(version)
        for key, value in {**tags, FINGERPRINT_TAG: fingerprint, "run_id": run.info.run_id}.items():
            self.client.set_model_version_tag(self.model_name, version, key, str(value))
        return RegisteredVersion(self.model_name, version, run.info.run_id, fingerprint, self.tags(version))

    def _version(self, version: str):
        try:
            return self.client.get_model_version(self.model_name, str(version))
        except Exception as error:
            raise RegistryError(
                f"model {self.model_name!r} has no version {version!r} in the registry "
                f"(latest: {self.latest_version() or 'none'}): check the version number"
            ) from error

    def tags(self, version: str) -> dict[str, str]:
        return dict(self._version(version).tags)

    def set_tags(self, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.model_name, str(version), key, str(value))

    def latest_version(self) -> str | None:
        try:
            versions = self.client.search_model_versions(f"name = '{self.model_name}'")
        except Exception:
            return None
        return str(max(int(v.version) for v in versions)) if versions else None

    def download(self, version: str, destination: Path) -> Path:
        uri = self.client.get_model_version_download_uri(self.model_name, str(version))
        return Path(self._mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(destination)))

    def compute_fingerprint(self, version: str) -> str:
        """The sha256 of the version's files as stored now (compare with the recorded tag)."""
        self._version(version)
        with tempfile.TemporaryDirectory() as tmp:
            return fingerprint_dir(self.download(version, Path(tmp)))

    def load(self, version: str, expected_fingerprint: str) -> Any:
        """The version's model, after checking that its files still hash to `expected_fingerprint`."""
        self._version(version)
        with tempfile.TemporaryDirectory() as tmp:
            path = self.download(version, Path(tmp))
            actual = fingerprint_dir(path)
            if actual != expected_fingerprint:
                raise RegistryError(
                    f"model {self.model_name!r} version {version}: files hash to {actual[:12]}, not the approved "
                    f"{expected_fingerprint[:12]}; the artifacts changed after approval: retrain and approve again"
                )
            return self._mlflow.sklearn.load_model(str(path))
