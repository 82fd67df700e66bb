"""features: check and validate sources, build the point-in-time training set and the online
snapshot (in ``params.partitions`` hash partitions of the entity, on the configured task runner),
validate them, publish."""

from __future__ import annotations

from prefect import flow

from churn.contracts import FeatureSet
from churn.params import FeaturesParams
from churn.settings import Settings
from flows.feature_partitions import feature_partitions, partition_runner
from tasks.features import (
    check_sources,
    discard_feature_set,
    load_repo,
    publish_feature_set,
    resolve_params,
    stage_feature_set,
    validate_feature_set,
    validate_sources,
)


@flow(name="features", log_prints=False)
def features(params: FeaturesParams = FeaturesParams()) -> FeatureSet:
    settings = Settings.from_env()
    params = resolve_params(settings, params)
    repo = load_repo(settings)
    sources = check_sources(settings, repo)
    source_checks = validate_sources(settings, repo, sources)
    version, staging = stage_feature_set(settings)
    try:
        build = feature_partitions.with_options(task_runner=partition_runner(settings))
        training, online = build(settings, repo, params, sources, staging)
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
