"""Training and evaluation of the fraud model on a window of hourly features (scikit-learn).

The window's last hour is the holdout: the candidate never sees it, and the same rows score the
model being served, so the two are compared on equal terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from orchestration_platform.lib.ml.features import FEATURE_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

MIN_TRAINING_ROWS = 200
MIN_CLASS_ROWS = 5


class NotEnoughData(ValueError):
    """The window has too few labelled rows (or only one class) to train or evaluate; the message says which."""


@dataclass(frozen=True)
class TrainingWindow:
    """The split of the labelled rows: training hours before the holdout hour."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    train_hours: list[datetime]
    holdout_hours: list[datetime]


def split_window(rows: pd.DataFrame, holdout_hours: int = 1) -> TrainingWindow:
    """The last `holdout_hours` hours with labels are the holdout; the rest trains."""
    hours = sorted(rows["hour"].unique()) if len(rows) else []
    if len(hours) <= holdout_hours:
        raise NotEnoughData(
            f"training window: {len(hours)} hour(s) with labelled features, need more than {holdout_hours} "
            "(one or more to train, the last for the holdout): materialize more hourly feature partitions"
        )
    holdout_set = hours[-holdout_hours:]
    train = rows[~rows["hour"].isin(holdout_set)]
    holdout = rows[rows["hour"].isin(holdout_set)]
    for name, part in (("training", train), ("holdout", holdout)):
        frauds = int(part["is_fraud"].sum())
        if len(part) < (MIN_TRAINING_ROWS if name == "training" else MIN_CLASS_ROWS * 2):
            raise NotEnoughData(f"{name} set: {len(part)} labelled rows is too few; wait for more labels")
        if min(frauds, len(part) - frauds) < MIN_CLASS_ROWS:
            raise NotEnoughData(
                f"{name} set: {frauds} fraud and {len(part) - frauds} genuine rows; each class needs at "
                f"least {MIN_CLASS_ROWS}: widen the window (more hours) or wait for more labels"
            )
    as_datetimes = [h.to_pydatetime() if hasattr(h, "to_pydatetime") else h for h in hours]
    return TrainingWindow(train, holdout, as_datetimes[:-holdout_hours], as_datetimes[-holdout_hours:])


def train_model(train: pd.DataFrame, *, seed: int = 0, max_iter: int = 150) -> Any:
    """A gradient-boosted classifier on the feature columns (fast, no scaling needed)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=0.1, random_state=seed)
    model.fit(train[list(FEATURE_COLUMNS)], train["is_fraud"].astype(int))
    return model


def evaluate(model: Any, holdout: pd.DataFrame) -> dict[str, float]:
    """ROC AUC and average precision of `model` on the holdout, plus its size."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    truth = holdout["is_fraud"].astype(int)
    scores = model.predict_proba(holdout[list(FEATURE_COLUMNS)])[:, 1]
    return {
        "roc_auc": float(roc_auc_score(truth, scores)),
        "average_precision": float(average_precision_score(truth, scores)),
        "holdout_rows": float(len(holdout)),
        "holdout_fraud_rate": float(truth.mean()),
    }


# A candidate must beat chance clearly when nothing is served yet; otherwise match the served model.
BASELINE_ROC_AUC = 0.6


@dataclass(frozen=True)
class Comparison:
    """The evaluation verdict: is the candidate at least as good as what users get now?"""

    passed: bool
    candidate_roc_auc: float
    served_roc_auc: float | None
    served_version: str | None
    reason: str


def compare(
    candidate: dict[str, float],
    served: dict[str, float] | None,
    served_version: str | None,
    tolerance: float = 0.005,
) -> Comparison:
    """Pass when the candidate's holdout ROC AUC is no worse than the served model's (minus `tolerance`)."""
    auc = candidate["roc_auc"]
    if served is None:
        passed = auc >= BASELINE_ROC_AUC
        reason = (
            f"no model is served yet; candidate ROC AUC {auc:.4f} "
            f"{'>=' if passed else '<'} baseline {BASELINE_ROC_AUC}"
        )
        return Comparison(passed, auc, None, None, reason)
    served_auc = served["roc_auc"]
    passed = auc >= served_auc - tolerance
    reason = (
        f"candidate ROC AUC {auc:.4f} vs served version {served_version} {served_auc:.4f} on the same holdout: "
        + ("no worse" if passed else "worse; it will not be offered for approval")
    )
    return Comparison(passed, auc, served_auc, served_version, reason)
