"""Alias moves in the MLflow registry: promote an approved challenger, roll back to the previous champion.

Aliases only (stages are deprecated): ``champion`` serves, ``previous`` is the one before it,
``challenger`` is the latest trained. Each move runs under a file lock and re-checks what it
expects, so two promotions racing can never leave zero or two champions, and every move is
appended to ``$CHURN_HOME/registry_events.jsonl`` with who, what and why.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from churn.contracts import RegistryEvent
from churn.settings import Settings

CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous", "challenger"


class PromotionConflict(RuntimeError):
    """The champion changed between gating and promotion; the gates compared against a stale model."""


class RollbackError(RuntimeError):
    """There is nothing to roll back to."""


def alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


@contextmanager
def registry_lock(settings: Settings) -> Iterator[None]:
    settings.registry_lock.parent.mkdir(parents=True, exist_ok=True)
    with open(settings.registry_lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def record_event(settings: Settings, event: RegistryEvent) -> RegistryEvent:
    with open(settings.registry_log, "a") as log:
        log.write(json.dumps(asdict(event)) + "\n")
    return event


def _now() -> str:
    return datetime.now(UTC).isoformat()


def promote(
    settings: Settings,
    client: Any,
    name: str,
    version: str,
    expected_champion: str | None,
    reason: str,
) -> RegistryEvent:
    """Make ``version`` the champion and the old champion ``previous``, if the champion is still the
    one the gates compared against. ``previous`` moves first, so ``champion`` always points somewhere."""
    with registry_lock(settings):
        current = alias_version(client, name, CHAMPION)
        if current != expected_champion:
            raise PromotionConflict(
                f"{name}: champion is v{current} but the gates compared v{version} against "
                f"{'v' + expected_champion if expected_champion else 'no champion'}; re-run the gates"
            )
        if current is not None:
            client.set_registered_model_alias(name, PREVIOUS, current)
        client.set_registered_model_alias(name, CHAMPION, version)
        client.set_model_version_tag(name, version, "promoted_at", _now())
        return record_event(
            settings, RegistryEvent(_now(), "promote", name, version, reason, previous=current)
        )


def rollback(settings: Settings, client: Any, name: str, reason: str) -> RegistryEvent:
    """Point ``champion`` back at ``previous``; the rolled-back version is tagged with the reason."""
    with registry_lock(settings):
        current = alias_version(client, name, CHAMPION)
        previous = alias_version(client, name, PREVIOUS)
        if current is None or previous is None:
            raise RollbackError(
                f"{name}: nothing to roll back to (champion {current}, previous {previous})"
            )
        client.set_registered_model_alias(name, CHAMPION, previous)
        client.delete_registered_model_alias(name, PREVIOUS)
        client.set_model_version_tag(name, current, "rolled_back", reason)
        client.set_model_version_tag(name, current, "rolled_back_at", _now())
        return record_event(
            settings, RegistryEvent(_now(), "rollback", name, previous, reason, rolled_back=current)
        )
