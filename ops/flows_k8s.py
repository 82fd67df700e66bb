"""The flows on Kubernetes, from the operator's side: the generated deployment file, the work pool
with the project's base job template, and registering an environment's deployments.

``churn flows generate`` writes deploy/prefect/k8s-deployments.yaml from prefect.yaml and
deploy/environments/*.yml (churn/flow_deployments.py), ``churn flows pool --env ENV`` creates or
updates the environment's ``kubernetes`` work pool with deploy/prefect/k8s-base-job-template.json
(its namespace default set to the environment's), and ``churn flows deploy --env ENV`` registers
that environment's deployments with the image tag of this checkout's commit.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from adapters.tools import run_tool
from churn.environments import Environment, load_environment
from churn.flow_deployments import HEADER, TAG_VARIABLE, deployment_file

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PREFECT_DIR = ROOT / "deploy" / "prefect"
TEMPLATE = PREFECT_DIR / "k8s-base-job-template.json"
DEPLOYMENTS = PREFECT_DIR / "k8s-deployments.yaml"


class FlowsError(RuntimeError):
    """A step could not run; the message says what to do."""


def environments(folder: Path) -> list[Environment]:
    """Every environment file, in promotion order (an environment after the one it requires)."""
    envs = {p.stem: load_environment(folder, p.stem) for p in folder.glob("*.yml")}

    def depth(env: Environment) -> int:
        required = envs.get(env.requires) if env.requires else None
        return 0 if required is None else 1 + depth(required)

    return sorted(envs.values(), key=lambda e: (depth(e), e.name))


def generated(root: Path = ROOT) -> str:
    """The text k8s-deployments.yaml must have for the committed prefect.yaml and environments."""
    project = yaml.safe_load((root / "prefect.yaml").read_text())
    document = deployment_file(project, environments(root / "deploy" / "environments"))
    return HEADER + yaml.safe_dump(document, sort_keys=False, width=100)


def write(root: Path = ROOT) -> Path:
    path = root / DEPLOYMENTS.relative_to(ROOT)
    path.write_text(generated(root))
    return path


def base_job_template(namespace: str | None = None) -> dict[str, Any]:
    """The project's base job template, with ``namespace`` as the Jobs' default namespace."""
    template: dict[str, Any] = json.loads(TEMPLATE.read_text())
    if namespace:
        template["variables"]["properties"]["namespace"]["default"] = namespace
    return template


def _prefect(args: list[str], env: dict[str, str]) -> str:
    return run_tool([str(BIN / "prefect"), *args], FlowsError, env=env, cwd=ROOT)


def _flows_environment(name: str) -> Environment:
    env = load_environment(ROOT / "deploy" / "environments", name)
    if env.flows is None:
        raise FlowsError(
            f"environment {name!r} runs its flows on a process worker (no flows: section in "
            f"deploy/environments/{name}.yml): `make deploy` registers them"
        )
    return env


def create_pool(name: str) -> str:
    """The environment's ``kubernetes`` work pool with the project's template (created or updated)."""
    env = _flows_environment(name)
    assert env.target.kind == "kubernetes"
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(base_job_template(env.target.namespace), handle)
    try:
        _prefect(
            [
                "work-pool", "create", env.work_pool, "--type", "kubernetes",
                "--base-job-template", handle.name, "--overwrite",
            ],
            {},
        )  # fmt: skip
    finally:
        Path(handle.name).unlink()
    return env.work_pool


def deploy(name: str, tag: str) -> str:
    """Register the environment's deployments from k8s-deployments.yaml, its image tagged ``tag``."""
    env = _flows_environment(name)
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag) or tag in ("latest", "nogit"):
        raise FlowsError(f"{tag!r} is no image tag to deploy: pass --tag (the flows image's tag)")
    if DEPLOYMENTS.read_text() != generated():
        raise FlowsError(f"{DEPLOYMENTS.relative_to(ROOT)} is stale: run `churn flows generate`")
    document = yaml.safe_load(DEPLOYMENTS.read_text())
    names = [d["name"] for d in document["deployments"] if d["work_pool"]["name"] == env.work_pool]
    arguments = ["--no-prompt", "deploy", "--prefect-file", str(DEPLOYMENTS)]
    for deployment in names:
        arguments += ["--name", deployment]
    return _prefect(arguments, {TAG_VARIABLE: tag})
