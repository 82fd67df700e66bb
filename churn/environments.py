"""Deployment environments as configuration (deploy/environments/<name>.yml), not code.

Each names where models are tracked, which work pool runs its flows, where its images go and how
they are tagged, what its deploy target is (a docker host or a Kubernetes overlay), how strict its
gates are and whether its schedules run. A promotion into an environment that ``requires`` another
(prod requires staging) needs that environment to have served the same model version first, or an
explicit override with a reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from churn.params import GateParams


class ImagePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repository: str = Field("churn-service", min_length=1, description="image name, no tag")
    registry: str | None = Field(
        None, description="registry host[/path] to push to; none: the image stays on the host"
    )
    tag: Literal["model-commit"] = Field(
        "model-commit", description="v<model version>-<git commit>: what is served, by what code"
    )


class DockerTarget(BaseModel):
    """Blue-green on one docker host: nginx on 127.0.0.1:``port`` in front of the live container."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["docker"] = "docker"
    port: int = Field(3000, ge=1, le=65535, description="the stable endpoint's port")
    name: str = Field("churn-service", min_length=1, description="container name prefix")
    volume: str = Field("churn-data", min_length=1, description="the prediction log's volume")


class KubernetesTarget(BaseModel):
    """deploy/k8s/overlays/<overlay>: the Deployment's image is set, its rollout awaited."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["kubernetes"] = "kubernetes"
    overlay: str = Field(min_length=1, description="a folder under deploy/k8s/overlays")
    namespace: str = Field(min_length=1)
    deployment: str = "churn-service"
    container: str = "service"
    service: str = "churn-service"
    rollout_timeout_seconds: int = Field(600, ge=1)


QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"
"""A Kubernetes resource quantity as the flows' resources are written (``500m``, ``2``, ``4Gi``)."""
_UNITS = {"": 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_UNITS |= {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}


def quantity(value: str) -> float:
    """``500m`` -> 0.5, ``4Gi`` -> 4294967296.0."""
    number = value.rstrip("mkMGTi")
    return float(number) * _UNITS[value[len(number) :]]


class FlowResources(BaseModel):
    """What a flow run's pod is scheduled with and may use (the base job template's variables)."""

    model_config = ConfigDict(extra="forbid")
    cpu_request: str = Field(pattern=QUANTITY)
    cpu_limit: str = Field(pattern=QUANTITY)
    memory_request: str = Field(pattern=QUANTITY)
    memory_limit: str = Field(pattern=QUANTITY)

    @model_validator(mode="after")
    def _requests_fit(self) -> FlowResources:
        for what in ("cpu", "memory"):
            request, limit = getattr(self, f"{what}_request"), getattr(self, f"{what}_limit")
            if quantity(request) > quantity(limit):
                raise ValueError(f"{what}_request {request} is above {what}_limit {limit}")
        return self


class FlowsImage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repository: str = Field("churn-flows", min_length=1, description="image name, no tag")
    registry: str | None = Field(None, description="registry host[/path] the cluster pulls from")


class KubernetesFlows(BaseModel):
    """The flows as Kubernetes Jobs on the environment's work pool (deploy/prefect): which of
    prefect.yaml's deployments run there, in which image, with what resources."""

    model_config = ConfigDict(extra="forbid")
    image: FlowsImage = FlowsImage()
    deployments: list[str] = Field(
        default_factory=lambda: ["features-daily", "train-weekly", "monitor-hourly", "rollback"],
        min_length=1,
        description="prefect.yaml deployments that get a <name>-<environment> twin on this pool",
    )
    resources: dict[str, FlowResources] = Field(
        description="'default', and per deployment (its prefect.yaml name) where it needs other"
    )

    @model_validator(mode="after")
    def _has_default(self) -> KubernetesFlows:
        if "default" not in self.resources:
            raise ValueError("resources needs a 'default' entry")
        unknown = set(self.resources) - {"default", *self.deployments}
        if unknown:
            raise ValueError(f"resources for deployments not listed here: {sorted(unknown)}")
        return self

    def resources_of(self, deployment: str) -> FlowResources:
        return self.resources.get(deployment, self.resources["default"])


class Environment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    description: str = ""
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; none: the project's embedded SQLite store"
    )
    work_pool: str = "churn-pool"
    image: ImagePolicy = ImagePolicy()
    target: DockerTarget | KubernetesTarget = Field(discriminator="kind")
    gates: GateParams = Field(
        default_factory=GateParams, description="gate strictness of training runs for this env"
    )
    schedules_active: bool = Field(False, description="register the deployments' schedules on")
    requires: str | None = Field(
        None, description="an environment that must have served a model version before this one"
    )
    auto_rollout: bool = Field(
        False, description="the package flow rolls a newly packaged champion out here"
    )
    flows: KubernetesFlows | None = Field(
        None,
        description="the flows as Kubernetes Jobs on work_pool, in the target's namespace "
        "(a kubernetes target only); none: they run on a process worker",
    )

    @model_validator(mode="after")
    def _not_itself(self) -> Environment:
        if self.requires == self.name:
            raise ValueError(f"environment {self.name!r} cannot require itself")
        if self.flows is not None and not isinstance(self.target, KubernetesTarget):
            raise ValueError(
                "flows: Kubernetes Jobs need a kubernetes target (its namespace holds the "
                "claims the Jobs mount)"
            )
        return self


def load_environment(folder: Path, name: str) -> Environment:
    """``<folder>/<name>.yml``, validated; errors name the file and the field."""
    path = folder / f"{name}.yml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yml"))
        raise LookupError(f"no environment {name!r}: {path} does not exist (known: {known})")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of settings")
    try:
        env = Environment.model_validate({"name": name, **raw})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"{path}: {problems}") from None
    if env.name != name:
        raise ValueError(f"{path}: name {env.name!r} differs from the file name {name!r}")
    return env


def promotion_allowed(
    env: Environment, model_version: str, served: dict[str, set[str]], override: str | None
) -> str:
    """Why a rollout of ``model_version`` to ``env`` may go ahead, or ValueError why not.

    ``served``: the model versions each environment has served (its successful rollouts)."""
    if env.requires is None:
        return f"{env.name} requires no earlier environment"
    if model_version in served.get(env.requires, set()):
        return f"{env.requires} served model version {model_version}"
    if override is not None:
        if len(override.strip()) < 10:
            raise ValueError("an override needs a reason of at least 10 characters")
        return f"override: {override.strip()}"
    raise ValueError(
        f"model version {model_version} has not been served by {env.requires}: deploy it there "
        f"first (make deploy-model ENV={env.requires}) or pass an override with a reason"
    )


def environment_gates(folder: Path, name: str) -> dict[str, object]:
    """The gate settings an environment sets explicitly (training's defaults there); none when the
    environment has no file (environments are optional until something is deployed)."""
    from churn.params import explicit

    if not (folder / f"{name}.yml").is_file():
        return {}
    return explicit(load_environment(folder, name).gates)


def smoke_problem(answers: object, ids: list[object], model_version: str) -> str | None:
    """What is wrong with a smoke prediction's answer (None: every id scored by that model)."""
    if not isinstance(answers, list) or len(answers) != len(ids):
        return f"expected {len(ids)} answers, got {str(answers)[:200]}"
    for answer in answers:
        if not isinstance(answer, dict):
            return f"an answer is not an object: {str(answer)[:100]}"
        if str(answer.get("model_version")) != model_version:
            return f"served by model {answer.get('model_version')}, not {model_version}"
        probability = answer.get("probability")
        if not isinstance(probability, int | float) or not 0 <= probability <= 1:
            return f"probability {probability!r} is not in [0, 1]"
    return None
