"""The Kubernetes manifests (deploy/k8s) as a cluster would get them, checked without one.

Each kustomization is rendered with `kubectl kustomize` (offline), every rendered document is validated
strictly (unknown fields are errors) against the Kubernetes JSON schemas that kubernetes-validate
bundles, and the properties the service relies on are asserted by name on every container: non-root,
read-only root filesystem, no privilege escalation, no capabilities, probes on BentoML's endpoints,
requests and limits, the API token from a Secret, the prediction log on the shared claim, a released
image tag. The negative tests show each check can fail.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from churn.settings import ServiceSettings
from tests.helpers import ROOT

K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.33.0"
"""The Kubernetes version whose bundled schemas every manifest must satisfy (the oldest one targeted)."""
OVERLAYS = ("staging", "prod")
KUSTOMIZATIONS = ("base", *(f"overlays/{o}" for o in OVERLAYS))
NAMESPACES = {"staging": "churn-staging", "prod": "churn-prod"}

# What the deploy flow and the monitor's Job rely on (deploy/k8s/README.md)
NAME = "churn-service"
CONTAINER = "service"
IMAGE_PLACEHOLDER = "churn-service"
SELECTOR = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "api"}
SECRET, SECRET_KEY = "churn-api-token", "token"
CLAIM, PREDICTIONS = "churn-predictions", "/predictions"
BENTOML_UID = 1034
PORT = 3000

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None,
    reason="kubectl is not installed: `kubectl kustomize` renders the overlays offline "
    "(`apt-get install kubectl`)",
)
pytestmark = needs_kubectl


@functools.cache
def _rendered(kustomization: str) -> str:
    done = subprocess.run(
        [str(KUBECTL), "kustomize", str(K8S / kustomization)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"kubectl kustomize {kustomization} failed: {done.stderr}"
    return done.stdout


def render(kustomization: str) -> list[dict[str, Any]]:
    """The documents of one kustomization, rendered offline (a fresh copy each call)."""
    return [d for d in yaml.safe_load_all(_rendered(kustomization)) if d]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def ident(doc: dict[str, Any]) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


# --- strict schema validation ----------------------------------------------------------------------


def schema_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Every document against the bundled strict schemas; a kind with no schema is a problem too
    (kubernetes-validate's command line only warns about it)."""
    problems = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            problems.append(f"{ident(doc)}: {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{ident(doc)}: {exc.message}")
    return problems


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_rendered_document_validates_strictly(kustomization):
    docs = render(kustomization)
    assert {d["kind"] for d in docs} >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "PersistentVolumeClaim",
        "ServiceAccount",
    }
    assert schema_problems(docs) == []


def _misspell_read_only(doc):
    container = doc["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFS"] = container["securityContext"].pop(
        "readOnlyRootFilesystem"
    )


def _replicas_as_text(doc):
    doc["spec"]["replicas"] = "three"


def _unknown_kind(doc):
    doc["kind"] = "Deploymnet"


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (_misspell_read_only, "'readOnlyRootFS' was unexpected"),
        (_replicas_as_text, "'three' is not of type 'integer'"),
        (_unknown_kind, "Couldn't find schema for kind Deploymnet"),
    ],
    ids=["unknown-field", "wrong-type", "unknown-kind"],
)
def test_the_validator_rejects_a_broken_manifest(breakage, expected):
    deployment = one(render("overlays/prod"), "Deployment")
    breakage(deployment)
    problems = schema_problems([deployment])
    assert len(problems) == 1 and expected in problems[0], problems


# --- the properties the service relies on ----------------------------------------------------------

QUANTITY = re.compile(r"(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?")
UNITS = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
UNITS |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(value: str | int) -> float:
    match = QUANTITY.fullmatch(str(value))
    assert match, f"not a Kubernetes quantity: {value!r}"
    return float(match[1]) * UNITS[match[2]]


def service_variables() -> set[str]:
    """The CHURN_* variables the service reads: ServiceSettings.from_env on an environment that records them."""
    read: set[str] = set()

    class Recording(dict):
        def get(self, key, default=None):
            read.add(key)
            return super().get(key, default)

    ServiceSettings.from_env(Recording())
    return {k for k in read if k.startswith("CHURN_")}


def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[dict, dict, dict]]:
    """(workload, pod spec, container) of every container of every workload."""
    for doc in docs:
        pod = doc.get("spec", {}).get("template", {}).get("spec")
        if pod:
            for container in pod.get("containers", []) + pod.get("initContainers", []):
                yield doc, pod, container


def hardening_problems(docs: list[dict[str, Any]], released: bool) -> list[str]:
    """What a container would lose against the service's contract, each by name (empty: nothing).

    ``released``: an overlay, whose image must name a registry and a tag (or digest) other than latest.
    """
    problems = []
    claims = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PersistentVolumeClaim"}
    known = service_variables()
    for workload, pod, c in containers(docs):
        at = f"{ident(workload)} container {c['name']}"

        def bad(what: str, at: str = at) -> None:
            problems.append(f"{at}: {what}")

        for problem in restricted_pod_problems(
            pod, c, BENTOML_UID, None, "the prediction-log volume may not be writable"
        ):
            bad(problem)

        resources = c.get("resources", {})
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in resources.get(kind, {}):
                    bad(f"no {resource} {kind}")
        for resource in ("cpu", "memory"):
            request = resources.get("requests", {}).get(resource)
            limit = resources.get("limits", {}).get(resource)
            if request and limit and quantity(request) > quantity(limit):
                bad(f"{resource} request {request} above its limit {limit}")

        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        if ports.get("http") != PORT:
            bad(f"no port named http on {PORT}: {ports}")
        for probe, path in (
            ("livenessProbe", "/livez"),
            ("readinessProbe", "/readyz"),
            ("startupProbe", "/livez"),
        ):
            get = c.get(probe, {}).get("httpGet", {})
            if get.get("path") != path or get.get("port") not in ("http", PORT):
                bad(f"{probe} is not GET {path} on port {PORT}: {c.get(probe)}")
        startup = c.get("startupProbe", {})
        if startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3) < 120:
            bad("startupProbe allows under 120 s for BentoML to import and load the model")

        pre_stop = c.get("lifecycle", {}).get("preStop", {})
        pause = pre_stop.get("sleep", {}).get("seconds")
        if not pause:
            bad("no preStop sleep: requests still routed to a stopping pod would fail")
        elif pod.get("terminationGracePeriodSeconds", 30) < pause + 30:
            bad("terminationGracePeriodSeconds leaves under 30 s after the preStop sleep")

        env = {e["name"]: e for e in c.get("env", [])}
        token = env.get("CHURN_API_TOKEN", {})
        ref = token.get("valueFrom", {}).get("secretKeyRef", {})
        if "value" in token or (ref.get("name"), ref.get("key")) != (SECRET, SECRET_KEY):
            bad(f"CHURN_API_TOKEN is not read from Secret {SECRET} key {SECRET_KEY}: {token}")
        if ref.get("optional"):
            bad("the API token Secret is optional: the service would start without auth")
        unknown = {n for n in env if n.startswith("CHURN_")} - known
        if unknown:
            bad(f"variables the service does not read: {sorted(unknown)}")
        if env.get("CHURN_PREDICTIONS_DIR", {}).get("value") != PREDICTIONS:
            bad(f"CHURN_PREDICTIONS_DIR is not {PREDICTIONS}")
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        log = volumes.get(mounts.get(PREDICTIONS, {}).get("name"), {})
        claim = log.get("persistentVolumeClaim", {}).get("claimName")
        if claim != CLAIM or mounts[PREDICTIONS].get("readOnly"):
            bad(f"{PREDICTIONS} is not a writable mount of claim {CLAIM}")
        elif "ReadWriteMany" not in claims.get(CLAIM, {}).get("spec", {}).get("accessModes", []):
            bad(f"claim {CLAIM} is not rendered ReadWriteMany: replicas and the monitor share it")
        if "emptyDir" not in volumes.get(mounts.get("/tmp", {}).get("name"), {}):
            bad("/tmp is not a writable emptyDir (the root filesystem is read-only)")

        image = c.get("image", "")
        if released:
            name, _, tag = image.rpartition(":") if "@" not in image else (image, "", "digest")
            if not name or "/" not in name or tag in ("", "latest") or "/" in tag:
                bad(f"image {image!r} has no registry and tag (or digest) other than latest")
        elif image != IMAGE_PLACEHOLDER:
            bad(f"the base image is {image!r}, not the placeholder {IMAGE_PLACEHOLDER!r}")
    return problems


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_container_keeps_the_service_contract(kustomization):
    docs = render(kustomization)
    assert [c["name"] for _, _, c in containers(docs)] == [CONTAINER]
    assert hardening_problems(docs, released=kustomization != "base") == []


def _pod(docs):
    return one(docs, "Deployment")["spec"]["template"]["spec"]


def _container(docs):
    return _pod(docs)["containers"][0]


def _writable_root(docs):
    _container(docs)["securityContext"]["readOnlyRootFilesystem"] = False


def _root_user(docs):
    _pod(docs)["securityContext"]["runAsUser"] = 0
    del _container(docs)["securityContext"]["runAsUser"]


def _no_readiness(docs):
    del _container(docs)["readinessProbe"]


def _no_memory_limit(docs):
    del _container(docs)["resources"]["limits"]["memory"]


def _token_in_plain_text(docs):
    env = _container(docs)["env"]
    env[:] = [
        {"name": "CHURN_API_TOKEN", "value": "s3cret"} if e["name"] == "CHURN_API_TOKEN" else e
        for e in env
    ]


def _latest_image(docs):
    _container(docs)["image"] = "registry.example.com/churn/churn-service:latest"


def _misnamed_variable(docs):
    _container(docs)["env"].append({"name": "CHURN_WORKERS", "value": "4"})


def _read_write_once_log(docs):
    claim = next(
        d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == CLAIM
    )
    claim["spec"]["accessModes"] = ["ReadWriteOnce"]


LOST_PROPERTIES = [
    (_writable_root, "readOnlyRootFilesystem is not true"),
    (_root_user, "runAsUser is 0, not 1034"),
    (_no_readiness, "readinessProbe is not GET /readyz"),
    (_no_memory_limit, "no memory limits"),
    (_token_in_plain_text, "CHURN_API_TOKEN is not read from Secret churn-api-token"),
    (_latest_image, "other than latest"),
    (_misnamed_variable, "variables the service does not read: ['CHURN_WORKERS']"),
    (_read_write_once_log, "is not rendered ReadWriteMany"),
]


@pytest.mark.parametrize(
    "breakage, expected", LOST_PROPERTIES, ids=[f.__name__.strip("_") for f, _ in LOST_PROPERTIES]
)
def test_a_lost_property_fails_by_name(breakage, expected):
    docs = render("overlays/prod")
    breakage(docs)
    problems = hardening_problems(docs, released=True)
    assert len(problems) == 1 and expected in problems[0], problems


def test_the_service_reads_the_settings_the_manifests_give_it():
    container = _container(render("overlays/prod"))
    environ = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    settings = ServiceSettings.from_env({**environ, "CHURN_API_TOKEN": "from-the-secret"})
    assert settings.predictions_dir == Path(PREDICTIONS)
    assert settings.reload_seconds == 0 and not settings.access_log and settings.workers == 2
    assert settings.api_token == "from-the-secret"


# --- the objects around the pods -------------------------------------------------------------------


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_service_hpa_and_pdb_point_at_the_pods(kustomization):
    docs = render(kustomization)
    deployment = one(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["metadata"]["name"] == NAME
    assert deployment["spec"]["selector"]["matchLabels"] == SELECTOR
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    service = one(docs, "Service")
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["selector"] == SELECTOR
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(80, "http")]
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": NAME,
    }
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"] == SELECTOR
    for selector in (SELECTOR, service["spec"]["selector"]):
        assert selector.items() <= pod_labels.items()
    # a budget that allows no disruption at the HPA's floor would block every node drain
    floor = hpa["spec"]["minReplicas"]
    assert pdb["spec"].get("minAvailable", 0) < floor or pdb["spec"].get("maxUnavailable", 0) >= 1
    assert all(
        d["metadata"]["labels"].get("app.kubernetes.io/part-of") == "churn-mlops" for d in docs
    )


@pytest.mark.parametrize(
    "overlay, replicas, min_available",
    [("staging", (1, 2), None), ("prod", (3, 10), 2)],
)
def test_each_overlay_sizes_its_environment(overlay, replicas, min_available):
    docs = render(f"overlays/{overlay}")
    namespace = one(docs, "Namespace")
    assert namespace["metadata"]["name"] == NAMESPACES[overlay]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {
        NAMESPACES[overlay]
    }
    hpa = one(docs, "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == replicas
    assert one(docs, "PodDisruptionBudget")["spec"].get("minAvailable") == min_available
    limits = {o: _container(render(f"overlays/{o}"))["resources"]["limits"] for o in OVERLAYS}
    assert quantity(limits["staging"]["memory"]) < quantity(limits["prod"]["memory"])


def test_no_secret_value_is_committed():
    for kustomization in KUSTOMIZATIONS:
        assert "Secret" not in {d["kind"] for d in render(kustomization)}
    committed = [
        p for p in K8S.rglob("*.yaml") if re.search(r"^kind:\s*Secret\b", p.read_text(), re.M)
    ]
    assert committed == []


def restricted_pod_problems(
    pod: dict[str, Any], container: dict[str, Any], uid: int, fs_group: int | None, volume: str
) -> list[str]:
    """What breaks the restricted Pod Security Standard (the overlays' namespaces enforce it) or a
    read-only, non-root run as the image's ``uid``; ``fs_group`` None accepts any fsGroup, and
    ``volume`` says what a wrong one breaks."""
    problems = []
    pod_sc, sc = pod.get("securityContext", {}), container.get("securityContext", {})
    merged = {**pod_sc, **sc}  # the container's own setting wins
    if merged.get("runAsNonRoot") is not True:
        problems.append("runAsNonRoot is not true")
    if merged.get("runAsUser") != uid:
        problems.append(f"runAsUser is {merged.get('runAsUser')}, not {uid} (the image's user)")
    if pod_sc.get("fsGroup") is None or fs_group not in (None, pod_sc["fsGroup"]):
        problems.append(f"fsGroup is {pod_sc.get('fsGroup')}, not {fs_group or 'set'}: {volume}")
    if merged.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("seccompProfile is not RuntimeDefault")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if sc.get("privileged"):
        problems.append("privileged")
    caps = sc.get("capabilities", {})
    if "ALL" not in caps.get("drop", []) or caps.get("add"):
        problems.append(f"capabilities are not drop ALL, add none: {caps}")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append("the service account token is mounted")
    return problems
