"""Serving-stage tasks: the champion and the online snapshot into the Bento model store, then the Bento."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from adapters import bento_store
from churn.contracts import PackagedModel
from churn.settings import Settings


@task(cache_policy=NO_CACHE)
def import_champion(settings: Settings, model_name: str) -> PackagedModel:
    """Import @champion with the latest online snapshot into the Bento model store, labelled with its lineage."""
    packaged = bento_store.import_champion(settings, model_name)
    get_run_logger().info(
        "imported %s v%s into the Bento model store as %s",
        model_name,
        packaged.model_version,
        packaged.tag,
    )
    return packaged


@task(cache_policy=NO_CACHE)
def build_bento(settings: Settings, packaged: PackagedModel) -> PackagedModel:
    """`bentoml build` of bentofile.yaml, labelled with the packaged model's lineage."""
    built = bento_store.build_bento(settings, packaged)
    get_run_logger().info("built bento %s with model %s", built.bento, built.tag)
    return built


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30])
def export_bento(settings: Settings, packaged: PackagedModel, target: str) -> PackagedModel:
    """The Bento as one archive on the object store, for replicas and image builds elsewhere to
    ``bentoml import``; retried, as a store may fail for a moment."""
    exported = bento_store.export_bento(settings, packaged, target)
    get_run_logger().info("exported bento %s to %s", exported.bento, exported.bento_url)
    return exported
