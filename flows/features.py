"""features: check sources, build the point-in-time training set and the online snapshot, publish."""

from __future__ import annotations

from prefect import flow

from churn.params import FeaturesParams
from churn.settings import Settings
from tasks import feature_sets
from tasks.features import build_online_snapshot, build_training_set, check_sources, load_repo, publish_feature_set


@flow(name="features", log_prints=False)
def features(params: FeaturesParams = FeaturesParams()) -> dict:
    settings = Settings.from_env()
    repo = load_repo(settings)
    sources = check_sources(settings, repo)
    version, staging = feature_sets.new_staging(settings.features_dir)
    try:
        training = build_training_set(settings, repo, params, sources["bounds"], staging)
        online = build_online_snapshot(settings, repo, params, sources["bounds"], staging)
        return publish_feature_set(settings, repo, version, staging, sources, training, online)
    except BaseException:
        feature_sets.discard_staging(staging)  # the last good "latest" stays as it was
        raise
