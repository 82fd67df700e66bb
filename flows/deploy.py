"""deploy: roll the packaged champion's image out to an environment (deploy/environments/<name>.yml).

Checks the promotion rule (prod needs a model version staging has served, or an override with a
reason), builds the Bento's image tagged v<model version>-<commit>, pushes it when the environment
names a registry, and rolls it out: blue-green behind nginx on a docker host, or the Deployment's
image on Kubernetes; readiness and a smoke prediction before anything is called live, and the
previous image back on any failure (the run then ends Failed, the reason in the rollout log)."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.states import State

from churn.settings import ServiceSettings, Settings
from flows.outcome import finish
from tasks.deploy import (
    build_image,
    check_promotion,
    packaged_model,
    push_image,
    resolve_environment,
    roll_out,
)


@flow(name="deploy", timeout_seconds=3600)
def deploy(
    environment: str = "dev", bento: str | None = None, override: str | None = None
) -> State[Any]:
    """``environment``: a file in deploy/environments; ``bento``: default the latest packaged one;
    ``override``: why a version may skip the required environment (recorded)."""
    settings = Settings.from_env()
    env = resolve_environment(settings, environment)
    tag, model_version, ids = packaged_model(
        settings, bento or f"{ServiceSettings.from_env().service_name}:latest"
    )
    why = check_promotion(settings, env, model_version, override)
    image = build_image(settings, env, tag, model_version)
    push_image(env, image)
    live = roll_out(settings, env, image, model_version, ids)
    return finish(
        live,
        "Deployed",
        f"model version {model_version} live in {env.name}: {live['target']} ({why})",
        ["deployed", f"env-{env.name}"],
    )
