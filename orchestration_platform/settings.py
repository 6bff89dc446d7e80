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
| INGESTION_CSV_URL_TEMPLATE | daily CSV URL, `{date}` is the partition (`YYYY-MM-DD`) | demo server's daily cases |
| INGESTION_START_DATE | first daily partition | `2026-01-01` |
| INGESTION_WAREHOUSE_URL | `sqlite:///path` (default) or a `postgresql://` URL | `sqlite:///<data>/warehouse.sqlite` |
| INGESTION_LANDING_ZONE | directory watched for dropped CSV files | `<data>/landing` |
| API_ENDPOINTS_CONFIG | YAML file that lists the API endpoints | the packaged demo config |
| MODEL_SERVING_URL | the model-serving HTTP app | `http://127.0.0.1:8780` |
| ALERT_WEBHOOK_URL | run-failure alerts go here (secret; unset = log only) | unset |
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


@dataclass(frozen=True)
class Settings:
    deployment: Deployment
    data_dir: Path
    sources_url: str
    kafka_bootstrap_servers: str
    csv_url_template: str
    ingestion_start_date: str
    warehouse_url: str
    landing_zone: Path
    api_endpoints_config: Path
    serving_url: str

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
        csv_url_template=_env("INGESTION_CSV_URL_TEMPLATE", f"{sources_url}/csv/daily_cases/{{date}}.csv"),
        ingestion_start_date=_env("INGESTION_START_DATE", "2026-01-01"),
        warehouse_url=_env("INGESTION_WAREHOUSE_URL", f"sqlite:///{data_dir / 'warehouse.sqlite'}"),
        landing_zone=Path(_env("INGESTION_LANDING_ZONE", str(data_dir / "landing"))).expanduser(),
        api_endpoints_config=Path(
            _env("API_ENDPOINTS_CONFIG", str(PACKAGE_DIR / "config" / "endpoints.yaml"))
        ).expanduser(),
        serving_url=_env("MODEL_SERVING_URL", DEFAULT_SERVING_URL).rstrip("/"),
    )
