"""The human approval gate: pending approvals per model version, decided on the review page or the CLI.

There is no Launchpad decision job: open-source Dagster has no sign-in, so a reviewer typed into run
config would be a claim, not an identity.
"""

import os
from datetime import UTC, datetime, timedelta

import dagster as dg

from orchestration_platform.defs.ml.registry import ModelRegistryResource
from orchestration_platform.defs.ml.training import CANDIDATE_KEY, candidate_model
from orchestration_platform.defs.shared.alerts import AlertWebhookResource
from orchestration_platform.defs.shared.postgres import PostgresResource
from orchestration_platform.settings import get_settings

APPROVAL_KEY = dg.AssetKey(["ml", "model_approval"])

model_approval = dg.AssetSpec(
    key=APPROVAL_KEY,
    group_name="ml",
    kinds={"postgres"},
    deps=[dg.AssetKey(["ml", "model_approval_request"])],
    description="Decisions on model versions (who, when, approve or reject, comment), made on the review "
    "page (behind the sign-in proxy; REVIEW_PAGE_URL) or with `orchestration-platform approve/reject` as "
    "your own OS user. The approvers policy (ML_APPROVERS, ML_APPROVER_GROUPS, ML_APPROVALS_REQUIRED, "
    "four-eyes) decides which decisions count. Each decision, refusal, expiry and deployment outcome is an "
    "audit record in `ml.approval_audit`, shown here as a materialization with that record as metadata.",
)


def _trainer(run: dg.DagsterRun) -> str:
    """Who launched the training: a sign-in user tag when the launcher records one, else the run itself.

    Open-source Dagster records no user; a free-text tag can only block that person's own approval
    (four-eyes), never grant one, so it is safe to honour.
    """
    for tag in ("dagster/user", "ml/requested_by"):
        if run.tags.get(tag, "").strip():
            return run.tags[tag].strip()
    return f"dagster run {run.run_id[:8]}"


def _evaluation(context: dg.AssetExecutionContext, materialization: dg.AssetMaterialization) -> dict:
    """The candidate's holdout metrics and the served model's on the same holdout (the blocking check)."""
    meta = {k: v.value for k, v in materialization.metadata.items()}
    candidate = {k: meta[f"holdout_{k}"] for k in ("roc_auc", "average_precision", "rows") if f"holdout_{k}" in meta}
    served: dict = {}
    record = context.instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(CANDIDATE_KEY, "beats_served_model")
    )
    data = record.event.dagster_event.event_specific_data if record and record.event else None
    if data is not None and getattr(data, "metadata", None):
        check = {k: v.value for k, v in data.metadata.items()}
        if str(check.get("model_version")) == str(meta.get("model_version")):
            served = {"version": str(check.get("served_version", "none"))}
            if "served_roc_auc" in check:
                served["roc_auc"] = check["served_roc_auc"]
    return {"candidate": candidate, "served": served}


@dg.asset(key=["ml", "model_approval_request"], group_name="ml", kinds={"postgres"}, deps=[candidate_model])
def model_approval_request(
    context: dg.AssetExecutionContext,
    model_registry: ModelRegistryResource,
    postgres: PostgresResource,
    alert_webhook: AlertWebhookResource,
) -> dg.MaterializeResult:
    """A pending approval for exactly the candidate version that passed evaluation (and its file fingerprint).

    Nothing waits in a worker: the request is a row in `ml.model_approvals` with the candidate's holdout
    metrics, the served model's on the same holdout, the feature partitions and data version and who
    launched the training (four-eyes). The alert webhook announces it with a link to the review page,
    where an approver decides (or `orchestration-platform approve VERSION` as your OS user). Pending
    requests expire after ML_APPROVAL_TTL_HOURS; a newer candidate supersedes older pending ones.
    """
    from orchestration_platform.lib.ml.approval_policy import ApprovalPolicy, PolicyError
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
    try:
        policy = ApprovalPolicy.from_env()
    except PolicyError as error:
        raise dg.Failure(str(error)) from None
    ttl = timedelta(hours=get_settings().ml_approval_ttl_hours)
    metrics = {
        k: v
        for k, v in tags.items()
        if k in ("feature_partitions", "feature_data_version", "evaluation_reason")
    } | _evaluation(context, event.asset_materialization)
    training_run = context.instance.get_run_by_id(event.run_id) or context.run
    started = datetime.now(UTC)
    with postgres.connect(autocommit=True) as conn:
        approval = request_approval(
            conn,
            model_name=registry.model_name,
            version=version,
            fingerprint=fingerprint,
            ttl=ttl,
            metrics=metrics,
            requested_by=_trainer(training_run),
            approvals_required=policy.required_approvals,
        )
    link = f"{review_page_url()}/#{approval.model_name}-{approval.version}"
    if approval.status == "pending" and approval.requested_at >= started - timedelta(seconds=1):
        alert_webhook.post(
            {
                "text": f"Model {approval.model_name} version {approval.version} awaits approval until "
                f"{approval.expires_at:%Y-%m-%d %H:%M}Z: {metrics.get('evaluation_reason', '')} Review: {link}",
                "model_name": approval.model_name,
                "model_version": approval.version,
                "review_url": link,
                "expires_at": approval.expires_at.isoformat(),
            }
        )
    context.log.info(
        f"model {approval.model_name} version {approval.version} awaits approval until "
        f"{approval.expires_at:%Y-%m-%d %H:%M}Z: review it at {link}"
    )
    return dg.MaterializeResult(
        metadata={
            "model_version": approval.version,
            "status": approval.status,
            "expires_at": approval.expires_at.isoformat(),
            "fingerprint": approval.fingerprint,
            "requested_by": approval.requested_by or "",
            "approvals_required": approval.approvals_required,
            "review_page": dg.MetadataValue.url(link),
        }
    )


def review_page_url() -> str:
    """Where people decide (REVIEW_PAGE_URL; default: the local review page of `make dev`)."""
    return (os.environ.get("REVIEW_PAGE_URL", "").strip() or "http://127.0.0.1:8790").rstrip("/")
