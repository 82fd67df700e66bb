"""package: import the current champion and the online snapshot into the Bento model store."""

from __future__ import annotations

from prefect import flow

from churn.settings import Settings
from tasks.serving import import_champion


@flow(name="package")
def package(model_name: str = "churn-classifier") -> dict:
    settings = Settings.from_env()
    return import_champion(settings, model_name)
