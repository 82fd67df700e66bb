"""features: check and validate sources, build the point-in-time training set and the online
snapshot, validate them, publish."""

from __future__ import annotations

from prefect import flow

from churn.contracts import FeatureSet
from churn.params import FeaturesParams
from churn.settings import Settings
from tasks.features import (
    build_online_snapshot,
    build_training_set,
    check_sources,
    discard_feature_set,
    load_repo,
    publish_feature_set,
    stage_feature_set,
    validate_feature_set,
    validate_sources,
)


@flow(name="features", log_prints=False)
def features(params: FeaturesParams = FeaturesParams()) -> FeatureSet:
    settings = Settings.from_env()
    repo = load_repo(settings)
    sources = check_sources(settings, repo)
    source_checks = validate_sources(settings, repo, sources)
    version, staging = stage_feature_set(settings)
    try:
        training = build_training_set(settings, repo, params, sources, staging)
        online = build_online_snapshot(settings, repo, params, sources, staging)
        output_checks = validate_feature_set(settings, repo, staging)
        return publish_feature_set(
            settings,
            repo,
            version,
            staging,
            sources,
            training,
            online,
            [source_checks, output_checks],
        )
    except Exception:
        discard_feature_set(staging)
        raise
