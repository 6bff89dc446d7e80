"""Every resource key, bound in this one place, per deployment (`DAGSTER_DEPLOYMENT`).

`local` and `test` run on the machine (embedded or test-session services); `prod` runs on
Kubernetes with external PostgreSQL and Kafka. Secrets are always `dg.EnvVar`s, so their
values never show in the UI.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from orchestration_platform.defs.shared.postgres import PostgresResource
from orchestration_platform.settings import Deployment, get_settings


def resources_for(deployment: Deployment) -> dict[str, Any]:
    settings = get_settings()
    shared: dict[str, Any] = {
        "postgres": PostgresResource(url=dg.EnvVar("POSTGRES_URL")),
    }
    per_deployment: dict[Deployment, dict[str, Any]] = {
        "local": {},
        "test": {},
        "prod": {},
    }
    del settings
    return {**shared, **per_deployment[deployment]}


@dg.definitions
def shared_resources() -> dg.Definitions:
    return dg.Definitions(resources=resources_for(get_settings().deployment))
