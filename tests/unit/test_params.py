"""A repo's pipeline.yml: its defaults fill what a run does not set; explicit params win; errors name the field."""

from __future__ import annotations

import pytest

from churn.featurestore import FeatureRepoError
from churn.params import (
    FeaturesParams,
    MonitorParams,
    TrainParams,
    parse_pipeline_config,
    with_repo_defaults,
)

PIPELINE = """
train:
  estimator: {kind: gradient_boosting, n_estimators: 80}
  gates:
    slices: {min_rows: 50}
    performance: {min_auc_roc: 0.7}
monitor:
  alerts: {max_positive_rate: 0.6}
"""


def test_repo_defaults_fill_what_the_run_leaves_unset():
    config = parse_pipeline_config(PIPELINE)
    plain = with_repo_defaults(TrainParams(), config.train)
    assert plain.estimator.kind == "gradient_boosting" and plain.estimator.n_estimators == 80
    assert plain.gates.slices.min_rows == 50 and plain.gates.performance.min_auc_roc == 0.7
    assert plain.gates.performance.min_pr_auc == 0.2  # untouched defaults stay
    explicit = with_repo_defaults(
        TrainParams(gates={"performance": {"min_auc_roc": 0.8}}, seed=3), config.train
    )
    assert (
        explicit.gates.performance.min_auc_roc == 0.8
        and explicit.gates.slices.min_rows == 50
        and explicit.seed == 3
    )
    other = with_repo_defaults(TrainParams(estimator={"kind": "logistic_regression"}), config.train)
    assert other.estimator.kind == "logistic_regression"  # another estimator replaces, never mixes
    assert with_repo_defaults(MonitorParams(), config.monitor).alerts.max_positive_rate == 0.6


def test_pipeline_yml_errors_name_the_file_and_field():
    with pytest.raises(
        FeatureRepoError, match=r"repo/pipeline.yml: invalid\n.*train.gates.slices.min_rows"
    ):
        parse_pipeline_config("train:\n  gates:\n    slices: {min_rows: -1}\n", "repo/pipeline.yml")
    with pytest.raises(FeatureRepoError, match="serve: Extra inputs are not permitted"):
        parse_pipeline_config("serve: {}\n", "repo/pipeline.yml")
    assert parse_pipeline_config("{}").train == {}


def test_an_explicit_estimator_with_default_hyperparameters_is_kept_whole():
    from churn.params import LogisticRegressionParams

    chosen = TrainParams().model_copy(update={"estimator": LogisticRegressionParams()})
    resolved = with_repo_defaults(
        chosen, {"estimator": {"kind": "gradient_boosting", "n_estimators": 80}}
    )
    assert resolved.estimator.kind == "logistic_regression"
    assert (
        with_repo_defaults(
            TrainParams(estimator={"kind": "hist_gradient_boosting"}),
            {"estimator": {"kind": "gradient_boosting"}},
        ).estimator.kind
        == "hist_gradient_boosting"
    )


def test_feature_partitions_are_a_count_from_one_set_by_the_run_or_pipeline_yml():
    assert FeaturesParams().partitions == 1
    for bad in (0, -2, 1025):
        with pytest.raises(
            ValueError, match=f"partitions must be between 1 .* and 1024, got {bad}"
        ):
            FeaturesParams(partitions=bad)
    config = parse_pipeline_config("features: {partitions: 8, every_days: 14}\n")
    from_repo = with_repo_defaults(FeaturesParams(), config.features)
    assert (from_repo.partitions, from_repo.every_days) == (8, 14)
    assert with_repo_defaults(FeaturesParams(partitions=2), config.features).partitions == 2
    with pytest.raises(
        FeatureRepoError, match=r"features.partitions: Value error, partitions must"
    ):
        parse_pipeline_config("features: {partitions: 0}\n", "repo/pipeline.yml")
