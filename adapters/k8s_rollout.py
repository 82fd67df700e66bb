"""Rollout of the service's image to a Kubernetes Deployment (deploy/k8s/overlays/<env>).

Through the official API client: read the Deployment's current image, patch the service container
to the new one, wait until the rollout has every replica updated and available (or the deadline or
ProgressDeadlineExceeded), then a smoke prediction through the Service (the API server's service
proxy). Any failure patches the previous image back and waits for that rollout, so the Deployment
ends on the image it started on. The manifests themselves are applied once with
``kubectl apply -k deploy/k8s/overlays/<env>`` (deploy/k8s/README.md); a rollout changes the image.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from churn.environments import KubernetesTarget


class RolloutError(RuntimeError):
    """The rollout did not complete; the message says which image the Deployment is back on."""


@dataclass(frozen=True)
class Outcome:
    image: str
    previous: str
    replicas: int


def api_client(kubeconfig: str | None = None) -> Any:
    """An API client from the kubeconfig (KUBECONFIG or ~/.kube/config), or the in-cluster account."""
    from kubernetes import client, config

    try:
        config.load_kube_config(config_file=kubeconfig)
    except config.ConfigException:
        config.load_incluster_config()
    return client.ApiClient()


def current_image(apps: Any, target: KubernetesTarget) -> str:
    deployment = apps.read_namespaced_deployment(target.deployment, target.namespace)
    for c in deployment.spec.template.spec.containers:
        if c.name == target.container:
            return str(c.image)
    raise RolloutError(
        f"deployment {target.namespace}/{target.deployment} has no container {target.container!r}"
    )


def set_image(apps: Any, target: KubernetesTarget, image: str) -> None:
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": target.container, "image": image}]}}}
    }
    apps.patch_namespaced_deployment(target.deployment, target.namespace, patch)


def rolled_out(deployment: Any) -> tuple[bool, str]:
    """(done, why not) from a Deployment's status, as ``kubectl rollout status`` reads it."""
    spec, status = deployment.spec, deployment.status
    wanted = spec.replicas if spec.replicas is not None else 1
    for condition in status.conditions or []:
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            raise RolloutError(f"progress deadline exceeded: {condition.message}")
    if (status.observed_generation or 0) < (deployment.metadata.generation or 0):
        return False, "waiting for the controller to see the change"
    updated, available = status.updated_replicas or 0, status.available_replicas or 0
    if updated < wanted:
        return False, f"{updated} of {wanted} replicas updated"
    if (status.replicas or 0) > updated:
        return False, f"{(status.replicas or 0) - updated} old replicas pending termination"
    if available < updated:
        return False, f"{available} of {updated} updated replicas available"
    return True, "rolled out"


def wait_rolled_out(apps: Any, target: KubernetesTarget, timeout: float, poll: float = 2.0) -> int:
    deadline, why = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        deployment = apps.read_namespaced_deployment(target.deployment, target.namespace)
        done, why = rolled_out(deployment)
        if done:
            return int(deployment.status.available_replicas or 0)
        time.sleep(poll)
    raise RolloutError(f"rollout not done after {timeout:.0f}s: {why}")


def smoke_through_service(
    core: Any, target: KubernetesTarget, body: dict[str, Any], token: str
) -> Any:
    """POST /predict_by_id through the API server's proxy to the Service."""
    answer = core.api_client.call_api(
        f"/api/v1/namespaces/{target.namespace}/services/{target.service}:http/proxy/predict_by_id",
        "POST",
        header_params={
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Authorization": f"Bearer {token}",
        },
        body=body,
        auth_settings=["BearerToken"],
        _preload_content=False,
    )
    return json.loads(answer.data)


def rollout(
    api: Any,
    target: KubernetesTarget,
    image: str,
    smoke: Callable[[Any], None],
    poll: float = 2.0,
) -> Outcome:
    """Roll ``image`` out; ``smoke(core_api)`` raises when the served prediction is wrong."""
    from kubernetes import client

    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    previous = current_image(apps, target)
    set_image(apps, target, image)
    try:
        replicas = wait_rolled_out(apps, target, target.rollout_timeout_seconds, poll)
        smoke(core)
    except Exception as exc:
        set_image(apps, target, previous)
        try:
            wait_rolled_out(apps, target, target.rollout_timeout_seconds, poll)
            back = f"rolled back to {previous}"
        except RolloutError as again:
            back = f"rolling back to {previous} has not finished either: {again}"
        raise RolloutError(f"{image} failed ({exc}); {back}") from exc
    return Outcome(image, previous, replicas)
