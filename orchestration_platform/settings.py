"""Deployment selection and typed settings, read from the environment.

Everything that differs between a laptop, the test session and a Kubernetes cluster is
an environment variable listed here; nothing is changed by editing code.

| variable | meaning | default |
|---|---|---|
| DAGSTER_DEPLOYMENT | `local`, `test` or `prod`: picks the resource set | `local` |
| PLATFORM_DATA_DIR | files the platform keeps (SQLite warehouse, raw files, landing zone) | `<repo>/.local/data` |
| POSTGRES_URL | PostgreSQL for API tables, events, features, registry (secret) | set by the dev stack |
| KAFKA_BOOTSTRAP_SERVERS | Kafka brokers for the ML events | `127.0.0.1:19092` |
| DEMO_SOURCES_URL | the local demo sources server | `http://127.0.0.1:8765` |
| INGESTION_CSV_URL_TEMPLATE | the demo dataset's CSV URL (its `url_template_env` in defs/ingestion/datasets/defs.yaml) | demo server's daily cases |
| INGESTION_START_DATE | the demo dataset's first daily partition (read by its defs.yaml) | `2026-01-01` |
| INGESTION_WAREHOUSE_URL | `sqlite:///path` (default) or a `postgresql://` URL | `sqlite:///<data>/warehouse.sqlite` |
| INGESTION_LANDING_ZONE | directory watched for dropped CSV files | `<data>/landing` |
| API_ENDPOINTS_CONFIG | another endpoints YAML file, replacing the lists in defs/api_etl/endpoints/defs.yaml | unset |
| MODEL_SERVING_URL | the model-serving HTTP app | `http://127.0.0.1:8780` |
| ALERT_WEBHOOK_URL | run-failure alerts go here (secret; unset = log only) | unset |
| ML_EVENTS_TOPIC | Kafka topic of the payment events | `payments` |
| ML_FEATURES_START | first hourly feature partition (`YYYY-MM-DD-HH:MM`, UTC) | `2026-01-01-00:00` |
| ML_APPROVAL_TTL_HOURS | hours a pending model approval stays open before it expires | `72` |
| MLFLOW_ARTIFACT_ROOT | model files of the registry (directory or object-store URI) | `<data>/mlflow-artifacts` |
| TRAINING_IMAGE | image of the training Job in `prod` (pinned tag or digest) | unset |
| TRAINING_NAMESPACE | namespace of the training Job in `prod` | `default` |
| TRAINING_SERVICE_ACCOUNT | service account of the training Job in `prod` | `orchestration-platform-training` |
| TRAINING_CPU, TRAINING_MEMORY | CPU and memory of the training Job in `prod` | `1`, `2Gi` |
| PLATFORM_DATA_CLAIM | PersistentVolumeClaim with PLATFORM_DATA_DIR, mounted into training Jobs in `prod` | unset |
| PLATFORM_SECRET_NAME | Secret whose keys (POSTGRES_URL, ...) the training Job gets in `prod` | `orchestration-platform` |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Deployment = Literal["local", "test", "prod"]
DEPLOYMENTS: tuple[Deployment, ...] = ("local", "test", "prod")

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent

DEFAULT_SOURCES_URL = "http://127.0.0.1:8765"
DEFAULT_KAFKA = "127.0.0.1:19092"
DEFAULT_SERVING_URL = "http://127.0.0.1:8780"


class SettingsError(ValueError):
    """A setting has a value the platform cannot use; the message says which and how to fix it."""


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def _positive_float(name: str, default: str) -> float:
    raw = _env(name, default)
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise SettingsError(f"{name}={raw!r} is not a positive number: set it to e.g. {default}")
    return value


@dataclass(frozen=True)
class Settings:
    deployment: Deployment
    data_dir: Path
    sources_url: str
    kafka_bootstrap_servers: str
    warehouse_url: str
    landing_zone: Path
    serving_url: str
    ml_events_topic: str
    ml_features_start: str
    ml_approval_ttl_hours: float
    mlflow_artifact_root: str
    training_image: str  # the defaults are get_settings' (one place)
    training_namespace: str
    training_service_account: str
    platform_secret_name: str
    training_cpu: str
    training_memory: str
    data_volume_claim: str

    @property
    def postgres_url(self) -> str:
        """The PostgreSQL URL; read on use so that a missing secret fails where it is needed."""
        url = os.environ.get("POSTGRES_URL", "").strip()
        if not url:
            raise SettingsError(
                "POSTGRES_URL is not set: export POSTGRES_URL=postgresql://USER:PASSWORD@HOST:PORT/DB "
                "(`make dev` sets it to the embedded server)"
            )
        return url


def get_settings() -> Settings:
    """Read the settings from the environment (cheap; call it where needed, never cache globally)."""
    deployment = _env("DAGSTER_DEPLOYMENT", "local")
    if deployment not in DEPLOYMENTS:
        raise SettingsError(
            f"DAGSTER_DEPLOYMENT={deployment!r} is not a deployment: use one of {', '.join(DEPLOYMENTS)}"
        )
    data_dir = Path(_env("PLATFORM_DATA_DIR", str(REPO_ROOT / ".local" / "data"))).expanduser()
    sources_url = _env("DEMO_SOURCES_URL", DEFAULT_SOURCES_URL).rstrip("/")
    return Settings(
        deployment=deployment,  # type: ignore[arg-type]
        data_dir=data_dir,
        sources_url=sources_url,
        kafka_bootstrap_servers=_env("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_KAFKA),
        warehouse_url=_env("INGESTION_WAREHOUSE_URL", f"sqlite:///{data_dir / 'warehouse.sqlite'}"),
        landing_zone=Path(_env("INGESTION_LANDING_ZONE", str(data_dir / "landing"))).expanduser(),
        serving_url=_env("MODEL_SERVING_URL", DEFAULT_SERVING_URL).rstrip("/"),
        ml_events_topic=_env("ML_EVENTS_TOPIC", "payments"),
        ml_features_start=_env("ML_FEATURES_START", "2026-01-01-00:00"),
        ml_approval_ttl_hours=_positive_float("ML_APPROVAL_TTL_HOURS", "72"),
        mlflow_artifact_root=_env("MLFLOW_ARTIFACT_ROOT", str(data_dir / "mlflow-artifacts")),
        training_image=_env("TRAINING_IMAGE", ""),
        training_namespace=_env("TRAINING_NAMESPACE", "default"),
        training_service_account=_env("TRAINING_SERVICE_ACCOUNT", "orchestration-platform-training"),
        platform_secret_name=_env("PLATFORM_SECRET_NAME", "orchestration-platform"),
        training_cpu=_env("TRAINING_CPU", "1"),
        training_memory=_env("TRAINING_MEMORY", "2Gi"),
        data_volume_claim=_env("PLATFORM_DATA_CLAIM", ""),
    )
