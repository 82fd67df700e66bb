"""The default synthetic world's training set and a model fitted on it, shared by the model tests."""

from __future__ import annotations

import pytest

from adapters import feature_engine as engine
from adapters.raw_data import write_world
from churn import training
from churn.featurestore import as_of_schedule
from churn.params import TrainParams
from churn.synthetic import WorldParams
from tests.helpers import settings_for


@pytest.fixture(scope="session")
def default_training_set(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("default-world")
    raw = tmp / "raw"
    write_world(WorldParams(), raw)  # the built-in default scale and seed
    settings = settings_for(tmp, raw)
    repo = engine.load_feature_repo(settings.feature_repo)
    with engine.connect(settings) as con:
        engine.register_sources(con, repo, engine.resolve_sources(repo, raw))
        bounds = engine.data_bounds(con, repo)
        engine.build_spine(
            con,
            repo,
            as_of_schedule(repo.config.spine, bounds.covered_from, bounds.covered_to),
            True,
        )
        frame = engine.evaluate_views(con, repo).df()
    schema = training.feature_schema(repo.feature_columns)
    return frame, schema


@pytest.fixture(scope="session")
def default_model(default_training_set):
    """The default estimator fitted on the training part of the time split; and the test rows."""
    frame, schema = default_training_set
    params = TrainParams()
    split = training.split_rows(frame, "label", params, horizon_days=30)
    pipe = training.build_pipeline(schema, params.estimator, params.class_weight, params.seed)
    pipe.fit(frame[schema.names].iloc[split.train], frame["label"].iloc[split.train])
    return pipe, frame.iloc[split.test].reset_index(drop=True), schema
