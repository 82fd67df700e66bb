"""package: import the current champion and the online snapshot into the Bento model store and
build the Bento (self-contained: serving needs no MLflow)."""

from __future__ import annotations

from prefect import flow

from churn.contracts import PackagedModel
from churn.settings import Settings
from tasks.serving import build_bento, import_champion


@flow(name="package")
def package(model_name: str | None = None) -> PackagedModel:
    """``model_name``: the registered model whose @champion is packaged (default: CHURN_MODEL_NAME)."""
    settings = Settings.from_env()
    return build_bento(settings, import_champion(settings, model_name or settings.model_name))
