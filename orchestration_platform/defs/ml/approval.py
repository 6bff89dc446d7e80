"""The human approval gate: pending approvals per model version, decided from the UI or the CLI."""

from datetime import timedelta
from typing import Literal

import dagster as dg
from pydantic import Field

from orchestration_platform.defs.ml.registry import ModelRegistryResource
from orchestration_platform.defs.ml.training import CANDIDATE_KEY, candidate_model
from orchestration_platform.defs.shared.postgres import PostgresResource
from orchestration_platform.settings import get_settings

APPROVAL_KEY = dg.AssetKey(["ml", "model_approval"])

model_approval = dg.AssetSpec(
    key=APPROVAL_KEY,
    group_name="ml",
    kinds={"postgres"},
    deps=[dg.AssetKey(["ml", "model_approval_request"])],
    description="Decisions on model versions (who, when, approve or reject, comment), from the "
    "`decide_model_approval` job in this UI or `orchestration-platform approve/reject`. Each decision, "
    "expiry and deployment outcome is an audit record in `ml.approval_audit`, shown here as a "
    "materialization with that record as metadata.",
)


@dg.asset(key=["ml", "model_approval_request"], group_name="ml", kinds={"postgres"}, deps=[candidate_model])
def model_approval_request(
    context: dg.AssetExecutionContext, model_registry: ModelRegistryResource, postgres: PostgresResource
) -> dg.MaterializeResult:
    """A pending approval for exactly the candidate version that passed evaluation (and its file fingerprint).

    Nothing waits in a worker: the request is a row in `ml.model_approvals`; a person decides later from
    the `decide_model_approval` job (Launchpad: version, decision, reviewer, comment) or the CLI. Pending
    requests expire after ML_APPROVAL_TTL_HOURS; a newer candidate supersedes older pending ones.
    """
    from orchestration_platform.lib.ml.approvals import request_approval
    from orchestration_platform.lib.ml.model_registry import EVALUATION_TAG, FINGERPRINT_TAG

    event = context.instance.get_latest_materialization_event(CANDIDATE_KEY)
    if event is None or event.asset_materialization is None:
        raise dg.Failure("no candidate model has been trained yet: materialize ml/candidate_model first")
    version = str(event.asset_materialization.metadata["model_version"].value)
    registry = model_registry.open()
    tags = registry.tags(version)
    if tags.get(EVALUATION_TAG) != "passed":
        raise dg.Failure(
            f"model version {version} is marked evaluation={tags.get(EVALUATION_TAG)!r}: only candidates that "
            "passed the evaluation against the served model are offered for approval"
        )
    fingerprint = registry.compute_fingerprint(version)
    if fingerprint != tags.get(FINGERPRINT_TAG):
        raise dg.Failure(f"model version {version}: its files changed since registration; retrain")
    ttl = timedelta(hours=get_settings().ml_approval_ttl_hours)
    metrics = {
        k: v
        for k, v in tags.items()
        if k in ("feature_partitions", "feature_data_version", "evaluation_reason")
    }
    with postgres.connect(autocommit=True) as conn:
        approval = request_approval(
            conn,
            model_name=registry.model_name,
            version=version,
            fingerprint=fingerprint,
            ttl=ttl,
            metrics=metrics,
            requested_by=f"dagster run {context.run_id[:8]}",
        )
    context.log.info(
        f"model {approval.model_name} version {approval.version} awaits approval until {approval.expires_at:%Y-%m-%d %H:%M}Z: "
        f"orchestration-platform approve {approval.version} --reviewer YOU"
    )
    return dg.MaterializeResult(
        metadata={
            "model_version": approval.version,
            "status": approval.status,
            "expires_at": approval.expires_at.isoformat(),
            "fingerprint": approval.fingerprint,
            "approve_with": f"orchestration-platform approve {approval.version} --reviewer YOU --comment '...'",
        }
    )


class ApprovalDecision(dg.Config):
    version: str = Field(description="The exact model version number shown in the pending approval.")
    decision: Literal["approve", "reject"]
    reviewer: str = Field(description="Who decides (name or email); recorded in the audit trail.")
    comment: str = ""


@dg.op(name="record_model_decision")
def record_model_decision(
    context: dg.OpExecutionContext,
    config: ApprovalDecision,
    postgres: PostgresResource,
    model_registry: ModelRegistryResource,
) -> None:
    """Record a person's decision on a pending model approval (refused for unknown, decided or expired ones)."""
    from orchestration_platform.lib.ml.approvals import ApprovalError, decide

    try:
        with postgres.connect(autocommit=True) as conn:
            approval = decide(
                conn,
                model_name=model_registry.model_name,
                version=config.version,
                decision=config.decision,
                reviewer=config.reviewer,
                comment=config.comment,
                source="dagster-ui",
            )
    except ApprovalError as error:
        raise dg.Failure(str(error)) from None
    context.log_event(
        dg.AssetMaterialization(
            asset_key=APPROVAL_KEY,
            description=f"{approval.status} by {approval.reviewer}",
            metadata={
                "model_version": approval.version,
                "decision": approval.status,
                "reviewer": approval.reviewer or "",
                "comment": approval.comment or "",
                "decided_at": approval.decided_at.isoformat() if approval.decided_at else "",
                "source": "dagster-ui",
            },
        )
    )


@dg.job(
    name="decide_model_approval",
    description="Approve or reject a pending model version: open the Launchpad, fill version, decision, "
    "reviewer and comment, and launch.",
)
def decide_model_approval() -> None:
    record_model_decision()
