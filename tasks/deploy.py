"""Deploy tasks: the environment, the promotion rule, the image, the push, the rollout."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from adapters import bento_store, container, docker_rollout, k8s_rollout, rollout_log
from churn.environments import Environment, load_environment, promotion_allowed, smoke_problem
from churn.settings import Settings


@task(cache_policy=NO_CACHE)
def resolve_environment(settings: Settings, name: str) -> Environment:
    return load_environment(settings.environments_dir, name)


@task(cache_policy=NO_CACHE)
def packaged_model(settings: Settings, bento: str) -> tuple[str, str, list[object]]:
    """The Bento's full tag, the model version it serves and ids for smoke predictions."""
    import bentoml

    bento_store.use_bentoml_home(settings)
    tag = str(bentoml.bentos.get(bento).tag)
    return (
        tag,
        bento_store.bento_model_version(settings, tag),
        bento_store.sample_ids(settings, tag),
    )


@task(cache_policy=NO_CACHE)
def check_promotion(
    settings: Settings, env: Environment, model_version: str, override: str | None
) -> str:
    why = promotion_allowed(env, model_version, rollout_log.served(settings.deploy_dir), override)
    get_run_logger().info("rollout of model version %s to %s: %s", model_version, env.name, why)
    return why


@task(cache_policy=NO_CACHE)
def build_image(settings: Settings, env: Environment, bento: str, model_version: str) -> str:
    """The Bento's image, tagged v<model version>-<git commit> (under the registry when one is set)."""
    repository = "/".join(p for p in (env.image.registry, env.image.repository) if p)
    tag = container.image_tag(repository, model_version, container.git_commit())
    built = container.containerize(settings, bento, tag)
    get_run_logger().info("built %s: %.0f MB in %.0f s", built.tag, built.size_mb, built.seconds)
    return built.tag


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
def push_image(env: Environment, image: str) -> bool:
    """docker push to the environment's registry; skipped, and said so, when it names none."""
    if env.image.registry is None:
        get_run_logger().info("push skipped: environment %s names no image registry", env.name)
        return False
    container.docker("push", image)
    return True


@task(cache_policy=NO_CACHE)
def roll_out(
    settings: Settings, env: Environment, image: str, model_version: str, ids: list[object]
) -> dict[str, Any]:
    """Roll ``image`` out to the environment's target; every outcome goes to the rollout log.
    A failure leaves the previous image serving (the target rolls back) and raises."""
    logger, target = get_run_logger(), env.target
    entry = {"environment": env.name, "model_version": model_version, "image": image}
    try:
        if target.kind == "docker":
            folder = docker_rollout.state_dir(settings.deploy_dir, env.name)
            new, old = docker_rollout.rollout(
                folder, target, image, model_version, docker_rollout.http_smoke(ids, model_version)
            )
            detail = {
                "target": f"docker, http://127.0.0.1:{target.port} -> {new.container}",
                "previous": old.image if old else None,
            }
        else:
            token = docker_rollout.api_token(settings.deploy_dir / env.name)

            def smoke(core: Any) -> None:
                problem = smoke_problem(
                    k8s_rollout.smoke_through_service(core, target, {"ids": ids}, token),
                    ids,
                    model_version,
                )
                if problem:
                    raise RuntimeError(f"smoke prediction through the Service: {problem}")

            outcome = k8s_rollout.rollout(k8s_rollout.api_client(), target, image, smoke)
            detail = {
                "target": f"kubernetes {target.namespace}/{target.deployment} ({outcome.replicas} replicas)",
                "previous": outcome.previous,
            }
    except (docker_rollout.RolloutError, k8s_rollout.RolloutError) as exc:
        rollout_log.record(settings.deploy_dir, **entry, status="rolled back", reason=str(exc))
        logger.error("rollout of %s to %s failed: %s", image, env.name, exc)
        raise
    line = rollout_log.record(settings.deploy_dir, **entry, status="live", **detail)
    logger.info("%s is live in %s: %s", image, env.name, detail["target"])
    return line


@task(cache_policy=NO_CACHE)
def auto_rollout_environment(settings: Settings) -> str | None:
    """The environment this process runs in (CHURN_ENV) when its file asks for automatic rollout."""
    if not (settings.environments_dir / f"{settings.environment}.yml").is_file():
        return None
    env = load_environment(settings.environments_dir, settings.environment)
    return env.name if env.auto_rollout else None
