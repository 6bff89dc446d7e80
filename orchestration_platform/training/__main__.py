"""Train a fraud-model candidate on a window of hourly features and register it (a Pipes process).

Extras from Dagster: `window_start`, `window_end` (ISO-8601, the feature hours to use),
`model_name`, `holdout_hours`, `artifact_root`, `seed`. The PostgreSQL URL comes from the
POSTGRES_URL environment variable (a secret), never from extras. Logs, the candidate's metrics
and the evaluation against the served model stream back to Dagster; the evaluation is reported
as the `beats_served_model` check, and a worse candidate is tagged `evaluation=worse` in the
registry so that it is never offered for approval.
"""

from __future__ import annotations

import hashlib
import os
import sys
from datetime import datetime


def main() -> int:
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        import psycopg

        from orchestration_platform.lib.ml.features import load_labelled_features
        from orchestration_platform.lib.ml.model_registry import EVALUATION_TAG, ModelRegistry
        from orchestration_platform.lib.ml.model_training import (
            NotEnoughData,
            compare,
            evaluate,
            split_window,
            train_model,
        )
        from orchestration_platform.lib.ml.serving_switch import served_version

        postgres_url = os.environ.get("POSTGRES_URL", "").strip()
        if not postgres_url:
            raise RuntimeError("POSTGRES_URL is not set in the training process: pass the platform secret")
        start = datetime.fromisoformat(pipes.get_extra("window_start"))
        end = datetime.fromisoformat(pipes.get_extra("window_end"))
        model_name = pipes.get_extra("model_name")
        seed = int(pipes.extras.get("seed", 0))
        with psycopg.connect(postgres_url, application_name="ml-training", autocommit=True) as conn:
            rows = load_labelled_features(conn, start, end)
            pipes.log.info(
                f"loaded {len(rows)} labelled feature rows for {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"
            )
            try:
                window = split_window(rows, int(pipes.extras.get("holdout_hours", 1)))
            except NotEnoughData as error:
                pipes.log.error(str(error))  # shows in the Dagster run log, not only in the process's stderr
                raise
            lineage_rows = conn.execute(
                "SELECT hour, computed_seq FROM ml.feature_hours WHERE hour = ANY(%s) ORDER BY hour",
                (window.train_hours + window.holdout_hours,),
            ).fetchall()
            served = served_version(conn, model_name)
        pipes.log.info(f"training on {len(window.train)} rows from {len(window.train_hours)} hours")
        model = train_model(window.train, seed=seed)
        candidate = evaluate(model, window.holdout)
        pipes.log.info(
            f"candidate on holdout: ROC AUC {candidate['roc_auc']:.4f}, AP {candidate['average_precision']:.4f}"
        )
        registry = ModelRegistry(postgres_url, pipes.get_extra("artifact_root"), model_name)
        served_metrics = None
        if served is not None:
            try:
                served_metrics = evaluate(registry.load(served.version, served.fingerprint), window.holdout)
            except Exception as error:  # an unusable served model cannot be the bar to beat
                pipes.log.warning(f"served version {served.version} could not be scored: {error}")
        verdict = compare(candidate, served_metrics, served.version if served else None)
        pipes.log.info(verdict.reason)
        partition_keys = [f"{h:%Y-%m-%d-%H:%M}" for h in window.train_hours + window.holdout_hours]
        data_version = hashlib.sha256(
            ";".join(f"{h.isoformat()}={seq}" for h, seq in lineage_rows).encode()
        ).hexdigest()[:16]
        registered = registry.register(
            model,
            metrics={f"holdout_{k}": v for k, v in candidate.items()},
            params={
                "algorithm": "HistGradientBoostingClassifier",
                "seed": seed,
                "train_rows": len(window.train),
            },
            tags={
                "feature_partitions": ",".join(partition_keys),
                "holdout_partitions": ",".join(f"{h:%Y-%m-%d-%H:%M}" for h in window.holdout_hours),
                "feature_data_version": data_version,
                EVALUATION_TAG: "passed" if verdict.passed else "worse",
                "evaluation_reason": verdict.reason,
                "compared_with_version": served.version if served else "none",
            },
        )
        pipes.log.info(
            f"registered {model_name} version {registered.version} ({registered.fingerprint[:12]})"
        )
        check_metadata = {
            "candidate_roc_auc": verdict.candidate_roc_auc,
            "served_version": verdict.served_version or "none",
            "reason": verdict.reason,
            "model_version": registered.version,
        }
        if verdict.served_roc_auc is not None:
            check_metadata["served_roc_auc"] = verdict.served_roc_auc
        pipes.report_asset_check(
            "beats_served_model", passed=verdict.passed, severity="ERROR", metadata=check_metadata
        )
        pipes.report_asset_materialization(
            metadata={
                "model_name": model_name,
                "model_version": registered.version,
                "fingerprint": registered.fingerprint,
                "mlflow_run_id": registered.run_id,
                "evaluation": "passed" if verdict.passed else "worse",
                "holdout_roc_auc": candidate["roc_auc"],
                "holdout_average_precision": candidate["average_precision"],
                "holdout_rows": int(candidate["holdout_rows"]),
                "train_rows": len(window.train),
                "feature_partitions": ",".join(partition_keys),
                "feature_data_version": data_version,
            },
            data_version=f"{model_name}:{registered.version}",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
