"""Every estimator the train flow offers saves and loads with skops using only the listed trusted types."""

from __future__ import annotations

import numpy as np
import pytest
import skops.io as sio
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import FixedThresholdClassifier

from adapters.mlflow_store import SKOPS_TRUSTED_TYPES
from churn import training
from churn.params import GradientBoostingParams, LogisticRegressionParams, TrainParams
from tests.helpers import TOY_SCHEMA as SCHEMA
from tests.helpers import toy_frame as frame


@pytest.mark.parametrize(
    "estimator",
    [TrainParams().estimator, GradientBoostingParams(n_estimators=5), LogisticRegressionParams()],
)
def test_trusted_types_cover_each_estimator(estimator):
    df = frame(3)
    pipe = training.build_pipeline(SCHEMA, estimator, "balanced", seed=1)
    pipe.fit(
        df[SCHEMA.names],
        df["label"],
        **training.fit_kwargs(estimator, "balanced", df["label"].to_numpy()),
    )
    model = FixedThresholdClassifier(
        FrozenEstimator(pipe), threshold=0.3, response_method="predict_proba"
    )
    model.fit(df[SCHEMA.names], df["label"])
    blob = sio.dumps(model)
    assert set(sio.get_untrusted_types(data=blob)) <= set(SKOPS_TRUSTED_TYPES)
    loaded = sio.loads(blob, trusted=SKOPS_TRUSTED_TYPES)
    x = df[SCHEMA.names]
    np.testing.assert_allclose(loaded.predict_proba(x), model.predict_proba(x))
    assert (loaded.predict(x) == (model.predict_proba(x)[:, 1] >= 0.3)).all()
