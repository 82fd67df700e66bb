"""package: import the current champion and the online snapshot into the Bento model store and
build the Bento (self-contained: serving needs no MLflow); with an object store (CHURN_STORAGE)
export it there as one archive; where the environment asks for automatic
rollout (``auto_rollout`` in deploy/environments/<CHURN_ENV>.yml), deploy it there."""

from __future__ import annotations

from prefect import flow

from churn.contracts import PackagedModel
from churn.settings import Settings
from flows.deploy import deploy
from tasks.deploy import auto_rollout_environment
from tasks.serving import build_bento, export_bento, import_champion


@flow(name="package")
def package(model_name: str | None = None) -> PackagedModel:
    """``model_name``: the registered model whose @champion is packaged (default: CHURN_MODEL_NAME)."""
    settings = Settings.from_env()
    packaged = build_bento(settings, import_champion(settings, model_name or settings.model_name))
    if settings.bento_exports:
        packaged = export_bento(settings, packaged, settings.bento_exports)
    environment = auto_rollout_environment(settings)
    if environment:
        deploy(environment, packaged.bento)
    return packaged
