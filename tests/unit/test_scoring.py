from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn import training
from churn.params import (
    GradientBoostingParams,
    HistGradientBoostingParams,
    LogisticRegressionParams,
)
from churn.scoring import compile_scorer

SCHEMA = training.FeatureSchema(
    numeric=["x", "n", "flag", "empty_late"], categorical=["plan", "region"]
)
DTYPES = {
    "x": "float64",
    "n": "int64",
    "flag": "bool",
    "empty_late": "float64",
    "plan": "str",
    "region": "str",
}


def fitted(estimator, seed: int = 0):
    rng = np.random.default_rng(seed)
    size = 600
    x = rng.normal(size=size)
    x[rng.random(size) < 0.1] = np.nan  # 'x' gets a missing indicator, 'n' never misses in training
    frame = pd.DataFrame(
        {
            "x": x,
            "n": rng.integers(0, 20, size).astype("float64"),
            "flag": rng.integers(0, 2, size).astype("float64"),
            "empty_late": rng.normal(size=size),
            "plan": rng.choice(["basic", "pro", None], size).astype(object),
            "region": rng.choice(["eu", "us"], size).astype(object),
        }
    )
    y = (
        (np.nan_to_num(x) + (frame["plan"] == "pro") + rng.normal(scale=0.5, size=size)) > 0.5
    ).astype(int)
    pipeline = training.build_pipeline(SCHEMA, estimator, "none", seed)
    return pipeline.fit(frame[SCHEMA.names], y)


ROWS = [
    [0.3, 4, 1, 0.1, "pro", "eu"],
    [
        None,
        None,
        None,
        None,
        None,
        None,
    ],  # every value missing, incl. features never missing in training
    [2.5, 19, 0, -3.0, "enterprise", "apac"],  # unseen categories encode as all zeros
    [-1e6, 1e6, 1, 1e9, "basic", "us"],
]


@pytest.mark.parametrize(
    "estimator",
    [
        HistGradientBoostingParams(max_iter=30),
        GradientBoostingParams(n_estimators=20),
        LogisticRegressionParams(),
    ],
    ids=lambda e: e.kind,
)
def test_compiled_scoring_matches_the_pipeline(estimator):
    pipeline = fitted(estimator)
    scorer = compile_scorer(pipeline, SCHEMA.names, DTYPES)
    assert scorer.compiled is not None
    expected = pipeline.predict_proba(scorer.frame(ROWS))[:, 1]
    np.testing.assert_allclose(scorer.proba(ROWS), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(scorer.proba(ROWS[:1]), expected[:1], rtol=0, atol=1e-12)
    assert scorer.verified(ROWS).compiled is not None


def test_unknown_pipeline_shape_is_scored_through_the_pipeline():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    pipeline = Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())]).fit(
        frame, [0, 0, 1, 1]
    )
    scorer = compile_scorer(pipeline, ["a", "b"], {"a": "float64", "b": "float64"})
    assert scorer.compiled is None
    np.testing.assert_allclose(
        scorer.proba([[1.5, 1.0]]), pipeline.predict_proba(frame.iloc[:1] * 0 + [1.5, 1.0])[:, 1]
    )


def test_verification_falls_back_when_the_compiled_path_disagrees():
    pipeline = fitted(LogisticRegressionParams())
    scorer = compile_scorer(pipeline, SCHEMA.names, DTYPES)
    scorer.compiled[0].medians[:] += 100.0  # a compiled path that no longer matches the pipeline
    assert scorer.verified(ROWS).compiled is None
    np.testing.assert_allclose(scorer.proba(ROWS), pipeline.predict_proba(scorer.frame(ROWS))[:, 1])


def test_forest_path_matches_the_estimator_for_small_and_large_batches():
    pipeline = fitted(HistGradientBoostingParams(max_iter=40, max_leaf_nodes=15))
    scorer = compile_scorer(pipeline, SCHEMA.names, DTYPES)
    assert scorer.forest is not None
    rng = np.random.default_rng(1)
    rows = [
        [
            float(rng.normal()) if rng.random() > 0.2 else None,
            int(rng.integers(0, 20)),
            int(rng.integers(0, 2)),
            float(rng.normal()),
            rng.choice(["basic", "pro", "x", None]),
            rng.choice(["eu", "us"]),
        ]
        for _ in range(300)
    ]
    expected = pipeline.predict_proba(scorer.frame(rows))[:, 1]
    np.testing.assert_allclose(scorer.proba(rows[:1]), expected[:1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        scorer.proba(rows[:50]), expected[:50], rtol=0, atol=1e-12
    )  # forest walk
    np.testing.assert_allclose(
        scorer.proba(rows), expected, rtol=0, atol=1e-12
    )  # estimator's predictor
