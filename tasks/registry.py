"""Registry-stage tasks (the alias moves themselves live in adapters/registry.py)."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from adapters import mlflow_store, registry
from churn import events
from churn.contracts import RegistryEvent
from churn.params import RollbackParams
from churn.settings import Settings


@task(cache_policy=NO_CACHE)
def roll_back_champion(settings: Settings, params: RollbackParams) -> RegistryEvent:
    """Move @champion back to @previous; the rolled-back version keeps the reason as a tag."""
    client = mlflow_store.connect(settings)
    event = registry.rollback(settings, client, params.model_name, params.reason)
    get_run_logger().warning(
        "rolled back %s: champion v%s -> v%s (%s)",
        params.model_name,
        event.rolled_back,
        event.champion,
        params.reason,
    )
    from prefect.events import emit_event

    emit_event(
        events.MODEL_ROLLED_BACK,
        resource=events.model_resource(params.model_name),
        payload={
            "champion": event.champion,
            "rolled_back": event.rolled_back,
            "reason": params.reason,
        },
    )
    create_markdown_artifact(
        key="rollback",
        markdown=f"# Rollback of {params.model_name}\n\nchampion v{event.rolled_back} -> v{event.champion}\n\n"
        f"reason: {params.reason}\n",
    )
    return event
