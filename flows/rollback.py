"""rollback: point @champion back at @previous, record why, and package it so the running service
serves the rolled-back model within its reload interval."""

from __future__ import annotations

from prefect import flow

from churn.contracts import RegistryEvent
from churn.params import RollbackParams
from churn.settings import Settings
from flows.package import package
from tasks.registry import roll_back_champion


@flow(name="rollback", timeout_seconds=1800)
def rollback(reason: str, model_name: str | None = None) -> RegistryEvent:
    """``reason``: why (kept on the rolled-back version and in the registry log); ``model_name``:
    the registered model (default: CHURN_MODEL_NAME). Run by hand:
    ``prefect deployment run rollback/rollback -p reason="auc fell after v7"``."""
    settings = Settings.from_env()
    params = RollbackParams(reason=reason, model_name=model_name or settings.model_name)
    event = roll_back_champion(settings, params)
    package(params.model_name)
    return event
