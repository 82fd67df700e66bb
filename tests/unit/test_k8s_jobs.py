"""Every Kubernetes Job a flow deployment would create, rendered by Prefect's own code and checked
strictly, without a cluster or a Prefect server.

For each deployment of deploy/prefect/k8s-deployments.yaml (its `{{ $CHURN_FLOWS_TAG }}` filled in
as `prefect deploy` does), the kubernetes worker's job configuration is built from the project's base
job template and the deployment's job variables (`from_template_and_values`) and prepared for a flow
run (`prepare_for_flow_run`): the manifest the worker would send to the API server. It must validate
strictly against the bundled Kubernetes schemas (tests/unit/test_k8s_manifests.py's validator) and
keep, by name, what the environment's file and the restricted Pod Security Standard ask for. Prefect's
default template fails the same validation (it puts Job fields in the pod spec): the fix is real.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import uuid
from typing import Any

import pytest
import yaml

from churn.environments import Environment, load_environment, quantity
from churn.flow_deployments import PROJECT_DIR, TAG_VARIABLE
from churn.settings import Settings
from ops import flows_k8s
from tests.helpers import ROOT
from tests.unit.test_k8s_manifests import (
    KUBECTL,
    NAMESPACES,
    render,
    restricted_pod_problems,
    schema_problems,
)

TAG = "0123456789ab"
UID = 1034
HOME, PREDICTIONS = "/churn", "/predictions"
HOME_CLAIM, PREDICTIONS_CLAIM = "churn-home", "churn-predictions"
ENVIRONMENTS = ROOT / "deploy" / "environments"


class NoServer:
    """The client `from_template_and_values` gets: the project's template names no block or Prefect
    variable, so rendering must never reach a server (any call fails the test)."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"rendering a Job asked the Prefect server for {name}")


def template() -> dict[str, Any]:
    return json.loads(flows_k8s.TEMPLATE.read_text())


def deployments() -> list[dict[str, Any]]:
    """The generated deployments as `prefect deploy` registers them (environment placeholders filled)."""
    from prefect.utilities.templating import apply_values

    document = yaml.safe_load(flows_k8s.DEPLOYMENTS.read_text())
    saved = os.environ.get(TAG_VARIABLE)
    os.environ[TAG_VARIABLE] = TAG
    try:
        return apply_values(document, os.environ, remove_notset=False)["deployments"]
    finally:
        if saved is None:
            del os.environ[TAG_VARIABLE]
        else:
            os.environ[TAG_VARIABLE] = saved


def environment_of(deployment: dict[str, Any]) -> Environment:
    return load_environment(ENVIRONMENTS, deployment["name"].rsplit("-", 1)[1])


def render_job(base_job_template: dict[str, Any], deployment: dict[str, Any]) -> dict[str, Any]:
    """The Job manifest the kubernetes worker would create for a run of ``deployment``."""
    from prefect.client.schemas.objects import Flow, FlowRun
    from prefect.client.schemas.responses import DeploymentResponse
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    job_variables = deployment["work_pool"].get("job_variables", {})
    configuration = asyncio.run(
        KubernetesWorkerJobConfiguration.from_template_and_values(
            copy.deepcopy(base_job_template), copy.deepcopy(job_variables), client=NoServer()
        )
    )
    flow = Flow(name=deployment["entrypoint"].rsplit(":", 1)[1])
    configuration.prepare_for_flow_run(
        flow_run=FlowRun(flow_id=flow.id, name="brave-fox", deployment_id=uuid.uuid4()),
        deployment=DeploymentResponse(
            id=uuid.uuid4(),
            name=deployment["name"],
            flow_id=flow.id,
            work_pool_name=deployment["work_pool"]["name"],
            tags=deployment.get("tags", []),
            job_variables=job_variables,
        ),
        flow=flow,
    )
    return configuration.job_manifest


def settings_variables() -> set[str]:
    """The CHURN_* variables the pipeline reads (Settings.from_env on an environment recording them)."""
    read: set[str] = set()

    class Recording(dict):
        def get(self, key, default=None):
            read.add(key)
            return super().get(key, default)

    Settings.from_env(Recording())
    return {k for k in read if k.startswith("CHURN_")}


def job_problems(job: dict[str, Any], env: Environment) -> list[str]:
    """What a rendered Job would lose against the flows' contract, each by name (empty: nothing)."""
    problems: list[str] = []
    bad = problems.append
    spec = job.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    containers = pod.get("containers", [])
    if [c.get("name") for c in containers] != ["prefect-job"] or pod.get("initContainers"):
        return [f"expected the one container prefect-job: {[c.get('name') for c in containers]}"]
    c = containers[0]

    # a Job that runs one flow run once: Prefect, not Kubernetes, retries and reschedules
    if (spec.get("parallelism"), spec.get("completions")) != (1, 1):
        bad("the Job spec does not set parallelism 1 and completions 1")
    if spec.get("backoffLimit") != 0:
        bad(f"backoffLimit is {spec.get('backoffLimit')}, not 0: Kubernetes would rerun a flow")
    if not spec.get("ttlSecondsAfterFinished"):
        bad("no ttlSecondsAfterFinished: finished Jobs pile up")
    if not spec.get("activeDeadlineSeconds"):
        bad("no activeDeadlineSeconds: a hung run holds its resources for good")
    if pod.get("restartPolicy") != "Never":
        bad(f"restartPolicy is {pod.get('restartPolicy')}, not Never")
    if job.get("metadata", {}).get("namespace") != env.target.namespace:
        bad(f"namespace is {job['metadata'].get('namespace')}, not {env.target.namespace}")

    # the restricted Pod Security Standard the overlays' namespaces enforce, and read-only
    for problem in restricted_pod_problems(
        pod, c, UID, UID, "CHURN_HOME's volume may not be writable"
    ):
        bad(problem)
    if any("hostPath" in v for v in pod.get("volumes", [])):
        bad("a hostPath volume")

    # resources: what the environment's file gives this deployment
    assert env.flows is not None
    base_name = job["metadata"]["labels"]["app.kubernetes.io/name"].removesuffix(f"-{env.name}")
    wanted = env.flows.resources_of(base_name)
    resources = c.get("resources", {})
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            have = resources.get(kind, {}).get(resource)
            want = getattr(wanted, f"{resource}_{kind.removesuffix('s')}")
            if have != want:
                bad(f"{resource} {kind} is {have}, not {want} ({env.name}.yml)")

    # the image, the command, the settings and the volumes
    registry, repository = env.flows.image.registry, env.flows.image.repository
    image = f"{registry}/{repository}:{TAG}" if registry else f"{repository}:{TAG}"
    if c.get("image") != image:
        bad(f"image is {c.get('image')}, not {image}")
    if c.get("command") or c.get("args") != ["prefect", "flow-run", "execute"]:
        bad(
            f"the container does not run `prefect flow-run execute`: {c.get('command')} {c.get('args')}"
        )
    env_vars = {e["name"]: e.get("value") for e in c.get("env", [])}
    for name, value in {
        "CHURN_HOME": HOME,
        "CHURN_PREDICTIONS_DIR": PREDICTIONS,
        "CHURN_ENV": env.name,
        "CHURN_TRACKING_URI": env.tracking_uri,
        # the worker passes its own Prefect settings on: PREFECT_HOME must stay on the writable /tmp
        "PREFECT_HOME": "/tmp/prefect",
        "PREFECT_LOCAL_STORAGE_PATH": f"{HOME}/prefect/storage",
    }.items():
        if env_vars.get(name) != value:
            bad(f"{name} is {env_vars.get(name)!r}, not {value!r}")
    unknown = {n for n in env_vars if n.startswith("CHURN_")} - settings_variables()
    if unknown:
        bad(f"variables the pipeline does not read: {sorted(unknown)}")
    duckdb = env_vars.get("CHURN_DUCKDB_MEMORY_LIMIT", "")
    limit = resources.get("limits", {}).get("memory")
    if not duckdb.endswith("MB") or not limit or int(duckdb[:-2]) * 1e6 > 0.75 * quantity(limit):
        bad(f"CHURN_DUCKDB_MEMORY_LIMIT {duckdb!r} leaves too little of the {limit} memory limit")
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}

    def claim(path: str) -> str | None:
        volume = volumes.get(mounts.get(path, {}).get("name"), {})
        return volume.get("persistentVolumeClaim", {}).get("claimName")

    if claim(HOME) != HOME_CLAIM or mounts[HOME].get("readOnly"):
        bad(f"{HOME} is not a writable mount of claim {HOME_CLAIM}")
    if claim(PREDICTIONS) != PREDICTIONS_CLAIM or not mounts[PREDICTIONS].get("readOnly"):
        bad(f"{PREDICTIONS} is not a read-only mount of claim {PREDICTIONS_CLAIM}")
    if "emptyDir" not in volumes.get(mounts.get("/tmp", {}).get("name"), {}):
        bad("/tmp is not a writable emptyDir (the root filesystem is read-only)")
    return problems


KUBERNETES_DEPLOYMENTS = deployments()
IDS = [d["name"] for d in KUBERNETES_DEPLOYMENTS]


def test_the_deployment_file_is_what_the_environments_make_of_prefect_yaml():
    assert flows_k8s.DEPLOYMENTS.read_text() == flows_k8s.generated(), (
        "deploy/prefect/k8s-deployments.yaml is stale: run `churn flows generate`"
    )


def test_every_kubernetes_environment_gets_each_listed_flow_on_its_own_pool():
    environments = [e for e in flows_k8s.environments(ENVIRONMENTS) if e.flows]
    assert {e.name for e in environments} == {"staging", "prod"}
    expected = [f"{d}-{e.name}" for e in environments for d in e.flows.deployments]
    assert expected == IDS
    for deployment in KUBERNETES_DEPLOYMENTS:
        env = environment_of(deployment)
        assert deployment["work_pool"]["name"] == env.work_pool
        assert f"env-{env.name}" in deployment["tags"]
        for schedule in deployment.get("schedules", []):
            assert schedule["active"] is env.schedules_active


@pytest.mark.parametrize("deployment", KUBERNETES_DEPLOYMENTS, ids=IDS)
def test_every_job_a_deployment_creates_validates_strictly_and_keeps_the_contract(deployment):
    job = render_job(template(), deployment)
    assert schema_problems([job]) == []
    assert job_problems(job, environment_of(deployment)) == []


def test_runs_start_in_the_images_project_and_retraining_stays_in_its_environment():
    document = yaml.safe_load(flows_k8s.DEPLOYMENTS.read_text())
    assert document["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": PROJECT_DIR}}
    ]
    by_name = {d["name"]: d for d in KUBERNETES_DEPLOYMENTS}
    for env in ("staging", "prod"):
        monitor = by_name[f"monitor-hourly-{env}"]
        assert (
            monitor["parameters"]["params"]["retrain"]["deployment"] == f"train/train-weekly-{env}"
        )
        (trigger,) = by_name[f"train-weekly-{env}"]["triggers"]
        assert trigger["expect"] == ["churn.retrain.requested"]
        assert trigger["match_related"] == {
            "prefect.resource.role": "work-pool",
            "prefect.resource.name": f"churn-k8s-{env}",
        }
    from churn.params import MonitorParams

    MonitorParams(**by_name["monitor-hourly-prod"]["parameters"]["params"])


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed: it renders the overlays")
@pytest.mark.parametrize("overlay", sorted(NAMESPACES))
def test_the_claims_a_job_mounts_exist_in_its_namespace(overlay):
    docs = render(f"overlays/{overlay}")
    claims = {
        d["metadata"]["name"]: d
        for d in docs
        if d["kind"] == "PersistentVolumeClaim"
        and d["metadata"]["namespace"] == NAMESPACES[overlay]
    }
    for deployment in KUBERNETES_DEPLOYMENTS:
        if not deployment["name"].endswith(f"-{overlay}"):
            continue
        job = render_job(template(), deployment)
        pod = job["spec"]["template"]["spec"]
        assert job["metadata"]["namespace"] == NAMESPACES[overlay]
        for volume in pod["volumes"]:
            if "persistentVolumeClaim" in volume:
                name = volume["persistentVolumeClaim"]["claimName"]
                assert name in claims, f"{deployment['name']} mounts {name}, not in {overlay}"
                assert "ReadWriteMany" in claims[name]["spec"]["accessModes"]


# --- the negative cases: the checks can fail --------------------------------------------------------


def test_prefects_default_template_fails_strict_validation():
    from prefect_kubernetes.worker import KubernetesWorker

    default = KubernetesWorker.get_default_base_job_template()
    deployment = next(d for d in KUBERNETES_DEPLOYMENTS if d["name"] == "train-weekly-staging")
    job = render_job(default, deployment)
    assert schema_problems([job]) == [
        "Job/None: spec.template.spec: Additional properties are not allowed "
        "('completions', 'parallelism' were unexpected)"
    ]
    problems = "\n".join(job_problems(job, environment_of(deployment)))
    for lost in ("runAsNonRoot", "readOnlyRootFilesystem", "capabilities", "/predictions", "/tmp"):
        assert lost in problems


def test_the_worker_requires_parallelism_and_completions_which_ours_sets_on_the_job():
    """prefect-kubernetes checks a template by diffing it with a base manifest that has both fields
    in the pod spec: missing everywhere, the template is refused; on the Job spec (where Kubernetes
    reads them) the diff is a move, which the check accepts. A change in the worker shows up here."""
    broken = template()
    del broken["job_configuration"]["job_manifest"]["spec"]["parallelism"]
    del broken["job_configuration"]["job_manifest"]["spec"]["completions"]
    with pytest.raises(
        ValueError, match="missing required attributes.*/spec/template/spec/completions"
    ):
        render_job(broken, KUBERNETES_DEPLOYMENTS[0])


def _writable_root(job):
    job["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "readOnlyRootFilesystem"
    ] = False


def _root_user(job):
    job["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = 0
    del job["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"]


def _kubernetes_retries(job):
    job["spec"]["backoffLimit"] = 6


def _writable_log(job):
    for mount in job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]:
        mount.pop("readOnly", None)


def _other_memory_limit(job):
    job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "64Gi"


def _misnamed_variable(job):
    job["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "CHURN_DUCKDB_MEMORY", "value": "1GB"}
    )


def _workers_prefect_home(job):
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    env[:] = [e for e in env if e["name"] != "PREFECT_HOME"]
    env.append({"name": "PREFECT_HOME", "value": "/home/prefect/.prefect"})


def _latest_image(job):
    job["spec"]["template"]["spec"]["containers"][0]["image"] = "churn-flows:latest"


LOST = [
    (_writable_root, "readOnlyRootFilesystem is not true"),
    (_root_user, "runAsUser is 0"),
    (_kubernetes_retries, "backoffLimit is 6, not 0"),
    (_writable_log, "/predictions is not a read-only mount of claim churn-predictions"),
    (_other_memory_limit, "memory limits is 64Gi, not 4Gi"),
    (_misnamed_variable, "variables the pipeline does not read: ['CHURN_DUCKDB_MEMORY']"),
    (_latest_image, "image is churn-flows:latest"),
    (_workers_prefect_home, "PREFECT_HOME is '/home/prefect/.prefect', not '/tmp/prefect'"),
]


@pytest.mark.parametrize("breakage, expected", LOST, ids=[f.__name__.strip("_") for f, _ in LOST])
def test_a_lost_property_of_a_job_fails_by_name(breakage, expected):
    deployment = next(d for d in KUBERNETES_DEPLOYMENTS if d["name"] == "train-weekly-staging")
    job = render_job(template(), deployment)
    breakage(job)
    problems = job_problems(job, environment_of(deployment))
    assert len(problems) == 1 and expected in problems[0], problems
