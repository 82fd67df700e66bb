"""How a flow run ends where the user looks: a named state with a message, and tags for the outcome.

A rejected challenger or an alerting window is not a crash, so the run stays ``Completed`` in type
(its result is returned as usual, `prefect deployment run --watch` exits 0) but is named for what
happened ("Rejected", "Alerting", "Retraining"), which the Prefect UI shows and filters on; a failure
of the pipeline itself raises and ends the run ``Failed``.
"""

from __future__ import annotations

from typing import Any

from prefect.runtime import flow_run
from prefect.states import Completed, State


def finish(data: Any, name: str, message: str, tags: list[str]) -> State[Any]:
    """The final state of the current flow run, its outcome tags added to the run."""
    from churn.settings import Settings

    if not any(t.startswith("env-") for t in tags):
        tags = [*tags, f"env-{Settings.from_env().environment}"]  # which environment it ran in
    run_id = flow_run.id
    if run_id:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_id)
            client.update_flow_run(run_id, tags=sorted({*run.tags, *tags}))
    return Completed(name=name, message=message, data=data)
