"""On the default synthetic world the default model beats a logistic-regression baseline and a
recency-only heuristic on the time-split test set, and lands in a believable AUC range."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from churn import training
from churn.params import LogisticRegressionParams, TrainParams


def test_default_model_beats_baselines(default_training_set):
    frame, schema = default_training_set
    params = TrainParams()
    split = training.split_rows(frame, "label", params, horizon_days=30)
    x, y = frame[schema.names], frame["label"].to_numpy()

    def test_auc(estimator) -> float:
        pipe = training.build_pipeline(schema, estimator, params.class_weight, params.seed)
        pipe.fit(x.iloc[split.train], y[split.train])
        return roc_auc_score(y[split.test], pipe.predict_proba(x.iloc[split.test])[:, 1])

    model_auc = test_auc(params.estimator)
    logistic_auc = test_auc(LogisticRegressionParams())
    recency_auc = roc_auc_score(
        y[split.test], frame["days_since_last_login"].to_numpy()[split.test]
    )

    assert 0.75 <= model_auc <= 0.9, model_auc  # learnable, never trivial
    assert model_auc >= logistic_auc + 0.01, (model_auc, logistic_auc)
    assert model_auc >= recency_auc + 0.05, (model_auc, recency_auc)
    assert 0.02 < np.mean(y) < 0.15
