"""Classification metrics: one function for the test set, the gates and the monitor's matured labels."""

from __future__ import annotations

import numpy as np

RANKING = ("auc_roc", "pr_auc")
"""Metrics that need both classes; left out when the labels hold only one."""


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, y_pred: np.ndarray
) -> dict[str, float]:
    """Metrics of decisions ``y_pred`` and probabilities ``proba`` against labels ``y_true`` (0/1).

    ``y_pred`` is what was decided (probability >= the model's decision threshold), passed in so a
    window of predictions by several model versions is judged on what each one answered.
    """
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        brier_score_loss,
        f1_score,
        log_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y_true = np.asarray(y_true).astype(int)
    out = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision": float(precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, zero_division=0)),
        "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        "log_loss": float(log_loss(y_true, np.clip(proba, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "brier": float(brier_score_loss(y_true, proba, pos_label=1)),
    }
    if len(np.unique(y_true)) == 2:
        out["auc_roc"] = float(roc_auc_score(y_true, proba))
        out["pr_auc"] = float(average_precision_score(y_true, proba))
    return out


def decide(proba: np.ndarray, decision_threshold: float) -> np.ndarray:
    """The model's decision: positive when the probability reaches its stored threshold."""
    return (np.asarray(proba) >= decision_threshold).astype(int)
