"""The candidate fraud model: trained on a window of hourly features in a separate process (Pipes)."""

from datetime import UTC, datetime, timedelta

import dagster as dg
from pydantic import Field

from orchestration_platform.defs.ml.features import transaction_features
from orchestration_platform.defs.ml.registry import ModelRegistryResource
from orchestration_platform.defs.ml.training_launcher import TrainingLauncher
from orchestration_platform.defs.shared.run_limits import max_runtime_tags

CANDIDATE_KEY = dg.AssetKey(["ml", "candidate_model"])


class TrainingConfig(dg.Config):
    window_hours: int = Field(
        default=24, ge=2, le=24 * 60, description="Feature hours to use (the last is the holdout)."
    )
    window_end: str = Field(
        default="",
        description="End of the window, ISO-8601 UTC hour (empty = the start of the current hour).",
    )
    holdout_hours: int = Field(default=1, ge=1, description="Most recent hours kept out of training.")
    seed: int = 0


def training_window(config: TrainingConfig, now: datetime | None = None) -> tuple[datetime, datetime]:
    """[start, end) of the feature hours to train on; a bad `window_end` fails with the expected format."""
    if config.window_end:
        try:
            end = datetime.fromisoformat(config.window_end)
        except ValueError:
            raise dg.Failure(
                f"window_end={config.window_end!r} is not an ISO-8601 time: use e.g. 2026-11-25T14:00:00+00:00"
            ) from None
        end = end.replace(tzinfo=end.tzinfo or UTC)
    else:
        end = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0)
    return end - timedelta(hours=config.window_hours), end


@dg.asset(
    key=CANDIDATE_KEY,
    group_name="ml",
    kinds={"sklearn", "kubernetes"},
    deps=[transaction_features],
    check_specs=[
        dg.AssetCheckSpec(
            "beats_served_model",
            asset=CANDIDATE_KEY,
            blocking=True,
            description="The candidate's holdout ROC AUC is no worse than the served model's on the same "
            "holdout (or beats the 0.6 baseline when nothing is served). A worse candidate is tagged "
            "`evaluation=worse` in the registry and never offered for approval.",
        )
    ],
)
def candidate_model(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    training_launcher: TrainingLauncher,
    model_registry: ModelRegistryResource,
):
    """A newly trained fraud model version in the MLflow registry, with its holdout metrics and lineage.

    Training runs `python -m orchestration_platform.training` through Dagster Pipes (a subprocess locally,
    a Kubernetes Job in production); its logs, metrics and the evaluation check stream back here. The
    registry version is tagged with the feature partitions and their data version it was trained on.
    """
    start, end = training_window(config)
    context.log.info(f"training window {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC")
    invocation = training_launcher.run(
        context,
        extras={
            "window_start": start.isoformat(),
            "window_end": end.isoformat(),
            "holdout_hours": config.holdout_hours,
            "seed": config.seed,
            "model_name": model_registry.model_name,
            "artifact_root": model_registry.artifact_root,
        },
        env={"MLFLOW_ARTIFACT_ROOT": model_registry.artifact_root},
    )
    return invocation.get_results()


train_candidate_model = dg.define_asset_job(
    "train_candidate_model",
    selection=dg.AssetSelection.assets(CANDIDATE_KEY, dg.AssetKey(["ml", "model_approval_request"])),
    description="Train a candidate on recent features, evaluate it against the served model, and offer "
    "it for approval if it is no worse.",
    run_tags=max_runtime_tags("train_candidate_model"),
)
