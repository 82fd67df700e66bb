"""Evaluation artifacts of a trained model: feature importance (CSV + chart) and the test-set curves."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from churn.contracts import FittedModel, TrainingData
from churn.training import Split, stratified_sample


def write_evaluation(
    out: Path, data: TrainingData, split: Split, fitted: FittedModel, seed: int
) -> None:
    """Feature importance (CSV + chart) and ROC, precision-recall, calibration and confusion-matrix plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import CalibrationDisplay
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

    x_test, y_test = data.xy(split.test)
    proba = fitted.model.predict_proba(x_test)[:, 1]
    pipeline = fitted.pipeline
    estimator = pipeline.named_steps["model"]
    if hasattr(estimator, "feature_importances_"):
        encoded = pipeline.named_steps["preprocess"].get_feature_names_out()
        raw = pd.Series(estimator.feature_importances_, index=encoded)
        # fold one-hot and missing-indicator columns back onto the feature they came from
        owner = {
            name: next(
                (
                    f
                    for f in sorted(data.schema.names, key=len, reverse=True)
                    if name == f or name.startswith(f + "_") or name == f"missingindicator_{f}"
                ),
                name,
            )
            for name in encoded
        }
        importance = raw.groupby(owner).sum().reindex(data.schema.names, fill_value=0.0)
        method = "impurity"
    else:
        # a stratified sample keeps this to about a second while ranking features stably enough to read
        sample = stratified_sample(y_test, 3000, seed)
        result = permutation_importance(
            pipeline,
            x_test.iloc[sample],
            y_test[sample],
            scoring="roc_auc",
            n_repeats=2,
            random_state=seed,
            n_jobs=1,
        )
        importance = pd.Series(result.importances_mean, index=data.schema.names)
        method = "permutation (drop in test AUC)"
    table = (
        importance.sort_values(ascending=False)
        .rename("importance")
        .rename_axis("feature")
        .reset_index()
    )
    table["method"] = method
    table.to_csv(out / "feature_importance.csv", index=False)

    fig, ax = plt.subplots(figsize=(7, max(3, 0.3 * len(table))))
    ax.barh(table["feature"][::-1], table["importance"][::-1])
    ax.set_title(f"Feature importance ({method})")
    fig.tight_layout()
    fig.savefig(out / "feature_importance.png", dpi=90)
    plt.close(fig)
    # one 2x2 figure: a single render is most of the cost of a plot here
    fig, axes = plt.subplots(2, 2, figsize=(10, 10))
    RocCurveDisplay.from_predictions(y_test, proba, ax=axes[0, 0])
    PrecisionRecallDisplay.from_predictions(y_test, proba, ax=axes[0, 1])
    CalibrationDisplay.from_predictions(
        y_test, proba, n_bins=10, strategy="quantile", ax=axes[1, 0]
    )
    ConfusionMatrixDisplay.from_predictions(
        y_test, (proba >= fitted.decision_threshold).astype(int), ax=axes[1, 1], colorbar=False
    )
    for ax, title in zip(
        axes.flat,
        (
            "ROC curve",
            "Precision-recall curve",
            "Calibration curve",
            f"Confusion matrix (threshold {fitted.decision_threshold:.3f})",
        ),
    ):
        ax.set_title(title)
    fig.suptitle(f"Test set: {len(y_test)} rows, {int(y_test.sum())} positive")
    fig.tight_layout()
    fig.savefig(out / "evaluation_curves.png", dpi=90)
    plt.close(fig)
