from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn import training
from churn.metrics import classification_metrics, decide
from churn.params import GradientBoostingParams, LogisticRegressionParams, TrainParams
from tests.helpers import TOY_SCHEMA as SCHEMA
from tests.helpers import toy_frame as frame


def test_time_split_holds_out_latest_dates_with_purge_gaps():
    df = frame(8)
    split = training.split_rows(
        df, "label", TrainParams(test_dates=2, valid_dates=1), horizon_days=30
    )
    as_of = df["as_of"]
    assert split.strategy == "time"
    assert as_of.iloc[split.train].max() + pd.Timedelta(days=30) <= as_of.iloc[split.valid].min()
    assert as_of.iloc[split.valid].max() + pd.Timedelta(days=30) <= as_of.iloc[split.test].min()
    assert as_of.iloc[split.test].nunique() == 2
    assert not set(split.train) & set(split.test)
    # a longer horizon leaves gaps: dates inside a gap are used by no part
    wide = training.split_rows(df, "label", TrainParams(), horizon_days=45)
    assert len(wide.train) + len(wide.valid) + len(wide.test) < len(df)


def test_time_split_needs_enough_dates():
    with pytest.raises(
        training.TrainingDataError, match="time split needs more as-of dates: 3 dates"
    ):
        training.split_rows(frame(3), "label", TrainParams(), horizon_days=30)


def test_single_snapshot_falls_back_to_stratified_random():
    df = frame(1, rows_per_date=500)
    split = training.split_rows(df, "label", TrainParams(), horizon_days=30)
    assert split.strategy == "stratified_random" and "single as-of" in split.details["reason"]
    parts = [split.train, split.valid, split.test]
    assert sum(map(len, parts)) == len(df) and len(set().union(*map(set, parts))) == len(df)
    rate = df["label"].mean()
    assert all(abs(df["label"].iloc[p].mean() - rate) < 0.02 for p in parts)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.iloc[0:0], "the training set is empty"),
        (lambda d: d.assign(label=0), "single class \\(0\\)"),
        (lambda d: d.assign(label=d["label"] * 2), "must hold only 0 and 1; found 2"),
        (lambda d: d.assign(x=np.nan), "entirely null: \\['x'\\]"),
        (lambda d: d.drop(columns=["plan"]), "missing columns \\['plan'\\]"),
    ],
)
def test_training_frame_errors(change, message):
    with pytest.raises(training.TrainingDataError, match=message):
        training.check_training_frame(change(frame(2)), "label", SCHEMA, "ts.parquet")


def test_choose_threshold_maximises_f1_and_metrics_are_complete():
    y = np.array([0, 0, 0, 0, 1, 1])
    proba = np.array([0.1, 0.2, 0.3, 0.6, 0.55, 0.9])
    t = training.choose_threshold(y, proba)
    assert t == pytest.approx(0.55)
    metrics = classification_metrics(y, proba, decide(proba, t))
    assert set(metrics) == {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "auc_roc",
        "pr_auc",
        "log_loss",
        "brier",
    }
    assert metrics["recall"] == 1.0 and metrics["precision"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "estimator",
    [TrainParams().estimator, GradientBoostingParams(n_estimators=5), LogisticRegressionParams()],
)
def test_pipeline_handles_missing_and_unseen_values(estimator):
    df = frame(3)
    df.loc[::7, "x"] = np.nan
    df.loc[::5, "plan"] = None
    pipe = training.build_pipeline(SCHEMA, estimator, "balanced", seed=1)
    pipe.fit(
        df[SCHEMA.names],
        df["label"],
        **training.fit_kwargs(estimator, "balanced", df["label"].to_numpy()),
    )
    unseen = pd.DataFrame({"x": [np.nan, 1.0], "plan": ["zzz", None]})
    assert pipe.predict_proba(unseen).shape == (2, 2)


def test_search_space_varies_only_hyperparameters():
    base = TrainParams().estimator
    trials = training.search_space(base, 5, seed=3)
    assert len(trials) == 5 and all(t.kind == base.kind for t in trials)
    assert len({t.model_dump_json() for t in trials}) > 1
    assert training.search_space(base, 5, seed=3) == trials


def test_estimator_params_are_validated():
    with pytest.raises(ValueError, match="learning_rate"):
        TrainParams(estimator={"kind": "hist_gradient_boosting", "learning_rate": 0})
    with pytest.raises(ValueError, match="does not match any of the expected tags"):
        TrainParams(estimator={"kind": "svm"})


def test_metrics_of_one_class_leave_out_the_ranking_metrics():
    y, proba = np.array([0, 0, 0]), np.array([0.1, 0.7, 0.2])
    metrics = classification_metrics(y, proba, decide(proba, 0.5))
    assert "auc_roc" not in metrics and "pr_auc" not in metrics
    assert metrics["accuracy"] == pytest.approx(2 / 3) and metrics["precision"] == 0.0
