"""Behavioural tests of the default model (in the style of Made With ML's): directional checks that
a change which should raise churn risk does not lower it, and invariance where the model must not
care (the spelling of a category's labels)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from churn import training
from churn.params import TrainParams


def proba(pipe, frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    return pipe.predict_proba(frame[names])[:, 1]


def test_more_support_tickets_never_lower_churn_risk_much(default_model):
    pipe, test, schema = default_model
    before = proba(pipe, test, schema.names)
    angrier = test.assign(
        support_tickets_30d=test["support_tickets_30d"] + 3,
        support_tickets_90d=test["support_tickets_90d"] + 3,
        high_priority_tickets_90d=test["high_priority_tickets_90d"] + 2,
        days_since_last_ticket=0,
    )
    after = proba(pipe, angrier, schema.names)
    assert after.mean() > before.mean()
    assert np.mean(after < before - 0.05) < 0.01, (
        "more tickets lowered the churn probability by > 0.05"
    )


def test_a_customer_who_stopped_logging_in_is_riskier(default_model):
    pipe, test, schema = default_model
    before = proba(pipe, test, schema.names)
    gone_quiet = test.assign(
        login_frequency_7d=0,
        logins_30d=0,
        active_days_30d=0,
        days_since_last_login=30,
        login_trend_7d_vs_30d=np.nan,
    )
    after = proba(pipe, gone_quiet, schema.names)
    assert after.mean() > before.mean() * 1.2
    assert np.mean(after < before - 0.05) < 0.01


def test_renaming_the_plan_labels_changes_no_ranking(default_training_set, default_model):
    """The labels of a category are names, not information: a consistent renaming (that also
    reorders them) trains a model that ranks the test rows the same way."""
    frame, schema = default_training_set
    pipe, test, _ = default_model
    renaming = {"basic": "zeta", "standard": "alpha", "premium": "mid"}
    params = TrainParams()
    split = training.split_rows(frame, "label", params, horizon_days=30)
    renamed = frame.assign(plan=frame["plan"].map(renaming))
    other = training.build_pipeline(schema, params.estimator, params.class_weight, params.seed)
    other.fit(renamed[schema.names].iloc[split.train], renamed["label"].iloc[split.train])
    original = proba(pipe, test, schema.names)
    again = proba(other, test.assign(plan=test["plan"].map(renaming)), schema.names)
    y = test["label"].to_numpy()
    assert abs(roc_auc_score(y, original) - roc_auc_score(y, again)) < 0.005
    assert np.corrcoef(original, again)[0, 1] > 0.99
