"""rollback: point @champion back at @previous and record why."""

from __future__ import annotations

from prefect import flow

from churn.contracts import RegistryEvent
from churn.params import RollbackParams
from churn.settings import Settings
from tasks.registry import roll_back_champion


@flow(name="rollback")
def rollback(params: RollbackParams) -> RegistryEvent:
    settings = Settings.from_env()
    if "model_name" not in params.model_fields_set:
        params = params.model_copy(update={"model_name": settings.model_name})
    return roll_back_champion(settings, params)
