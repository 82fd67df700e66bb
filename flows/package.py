"""package: import the current champion and the online snapshot into the Bento model store and
build the Bento (self-contained: serving needs no MLflow)."""

from __future__ import annotations

from prefect import flow

from churn.contracts import PackagedModel
from churn.settings import MODEL_NAME, Settings
from tasks.serving import build_bento, import_champion


@flow(name="package")
def package(model_name: str = MODEL_NAME) -> PackagedModel:
    settings = Settings.from_env()
    return build_bento(settings, import_champion(settings, model_name))
