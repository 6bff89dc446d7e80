"""Deployment: switch serving to an approved model version, verify it, roll back on failure."""

import dagster as dg
from pydantic import Field

from orchestration_platform.defs.ml.approval import APPROVAL_KEY
from orchestration_platform.defs.ml.registry import ModelRegistryResource
from orchestration_platform.defs.ml.serving_client import ServingEndpointResource
from orchestration_platform.defs.shared.postgres import PostgresResource
from orchestration_platform.defs.shared.run_limits import max_runtime_tags


class DeployConfig(dg.Config):
    version: str = Field(description="The approved model version to serve.")


@dg.asset(key=["ml", "served_model"], group_name="ml", kinds={"fastapi"}, deps=[APPROVAL_KEY])
def served_model(
    context: dg.AssetExecutionContext,
    config: DeployConfig,
    model_registry: ModelRegistryResource,
    model_serving: ServingEndpointResource,
    postgres: PostgresResource,
) -> dg.MaterializeResult:
    """The model version the serving endpoint answers with (`ml.serving_state`).

    Runs when an approval lands (the `approved_model_deployments` sensor). Refuses any version that is not
    approved, or whose files no longer match the approved fingerprint; switches atomically, checks
    `/healthz` and `/version`, and rolls back to the previous version if either fails.
    """
    from orchestration_platform.lib.ml.approvals import ApprovalError
    from orchestration_platform.lib.ml.model_registry import RegistryError
    from orchestration_platform.lib.ml.serving_switch import DeploymentFailed, switch_serving

    registry = model_registry.open()
    try:
        fingerprint = registry.compute_fingerprint(config.version)
        served = switch_serving(
            postgres.url,
            model_serving.url,
            model_name=registry.model_name,
            version=config.version,
            fingerprint=fingerprint,
            actor=f"dagster run {context.run_id[:8]}",
            verify_timeout_s=model_serving.verify_timeout_s,
        )
    except (ApprovalError, RegistryError, DeploymentFailed) as error:
        raise dg.Failure(str(error)) from None
    context.log.info(f"serving {served.model_name} version {served.version} (was {served.previous_version})")
    return dg.MaterializeResult(
        metadata={
            "model_version": served.version,
            "previous_version": served.previous_version or "none",
            "fingerprint": served.fingerprint,
            "serving_url": model_serving.url,
        }
    )


deploy_approved_model = dg.define_asset_job(
    "deploy_approved_model",
    selection=[served_model],
    description="Switch serving to an approved model version (started by the approval sensor).",
    run_tags=max_runtime_tags("deploy_approved_model"),
)
