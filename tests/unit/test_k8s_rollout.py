"""The Kubernetes rollout's logic through the real API client (kubernetes), against a fake API server
on loopback: the only stand-in, at the cluster boundary. It keeps one Deployment whose status a
scenario drives (the controller's part) and answers the Service proxy (the pods' part)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from adapters import k8s_rollout
from churn.environments import KubernetesTarget

TARGET = KubernetesTarget(overlay="staging", namespace="churn-staging", rollout_timeout_seconds=2)
DEPLOYMENT = f"/apis/apps/v1/namespaces/{TARGET.namespace}/deployments/{TARGET.deployment}"
PROXY = f"/api/v1/namespaces/{TARGET.namespace}/services/{TARGET.service}:http/proxy/predict_by_id"


class FakeCluster(BaseHTTPRequestHandler):
    image = "registry.example.com/churn/churn-service:v1-aaa"
    generation = 1
    healthy = {"registry.example.com/churn/churn-service:v1-aaa"}
    """Images whose pods become available; others never do (the controller's verdict)."""
    patches: list[str] = []
    proxied: list[dict] = []
    version = {"registry.example.com/churn/churn-service:v1-aaa": "1"}

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _deployment(self) -> dict:
        cls, ready = type(self), self.image in self.healthy
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": TARGET.deployment,
                "namespace": TARGET.namespace,
                "generation": cls.generation,
            },
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "churn"}},
                "template": {
                    "metadata": {"labels": {"app": "churn"}},
                    "spec": {"containers": [{"name": TARGET.container, "image": cls.image}]},
                },
            },
            "status": {
                "observedGeneration": cls.generation,
                "replicas": 3,
                "updatedReplicas": 3,
                "availableReplicas": 3 if ready else 1,
                "conditions": [
                    {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}
                ],
            },
        }

    def do_GET(self):
        if self.path.split("?")[0] == DEPLOYMENT:
            return self._send(200, self._deployment())
        self._send(404, {"kind": "Status", "code": 404})

    def do_PATCH(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        cls.image = body["spec"]["template"]["spec"]["containers"][0]["image"]
        cls.generation += 1
        cls.patches.append(cls.image)
        self._send(200, self._deployment())

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.split("?")[0] != PROXY:
            return self._send(404, {"kind": "Status", "code": 404})
        type(self).proxied.append({"auth": self.headers.get("Authorization"), **body})
        version = self.version.get(self.image, "?")
        self._send(
            200,
            [{"customer_id": i, "probability": 0.3, "model_version": version} for i in body["ids"]],
        )


@pytest.fixture
def cluster(tmp_path):
    FakeCluster.image = "registry.example.com/churn/churn-service:v1-aaa"
    FakeCluster.generation, FakeCluster.patches, FakeCluster.proxied = 1, [], []
    FakeCluster.healthy = {FakeCluster.image}
    FakeCluster.version = {FakeCluster.image: "1"}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeCluster)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    from kubernetes import client

    config = client.Configuration()
    config.host = f"http://127.0.0.1:{server.server_port}"
    config.api_key = {"authorization": "Bearer cluster-token"}
    try:
        yield client.ApiClient(config)
    finally:
        server.shutdown()


def smoke(version: str):
    from churn.environments import smoke_problem

    def check(core):
        answers = k8s_rollout.smoke_through_service(core, TARGET, {"ids": [7, 8]}, "svc-token")
        problem = smoke_problem(answers, [7, 8], version)
        if problem:
            raise RuntimeError(problem)

    return check


NEW = "registry.example.com/churn/churn-service:v2-bbb"


def test_a_healthy_image_rolls_out_and_is_smoke_tested_through_the_service(cluster):
    FakeCluster.healthy.add(NEW)
    FakeCluster.version[NEW] = "2"
    outcome = k8s_rollout.rollout(cluster, TARGET, NEW, smoke("2"), poll=0.05)
    assert (outcome.image, outcome.previous, outcome.replicas) == (
        NEW,
        "registry.example.com/churn/churn-service:v1-aaa",
        3,
    )
    assert FakeCluster.patches == [NEW] and FakeCluster.image == NEW
    (call,) = FakeCluster.proxied
    assert call["ids"] == [7, 8] and call["auth"] == "Bearer svc-token"


def test_a_rollout_that_never_becomes_available_times_out_and_rolls_back(cluster):
    with pytest.raises(k8s_rollout.RolloutError) as failed:
        k8s_rollout.rollout(cluster, TARGET, NEW, smoke("2"), poll=0.05)
    assert "not done after 2s: 1 of 3 updated replicas available" in str(failed.value)
    assert "rolled back to registry.example.com/churn/churn-service:v1-aaa" in str(failed.value)
    assert FakeCluster.patches == [NEW, "registry.example.com/churn/churn-service:v1-aaa"]
    assert FakeCluster.proxied == []  # never smoke-tested an unavailable rollout


def test_a_wrong_smoke_answer_rolls_back_even_when_every_pod_is_ready(cluster):
    FakeCluster.healthy.add(NEW)
    FakeCluster.version[NEW] = "1"  # the pods still serve the old model
    with pytest.raises(k8s_rollout.RolloutError, match="served by model 1, not 2.*rolled back"):
        k8s_rollout.rollout(cluster, TARGET, NEW, smoke("2"), poll=0.05)
    assert FakeCluster.image == "registry.example.com/churn/churn-service:v1-aaa"


def test_progress_deadline_exceeded_is_a_failure_not_a_wait():
    from types import SimpleNamespace as NS

    stuck = NS(
        spec=NS(replicas=3),
        metadata=NS(generation=2),
        status=NS(
            observed_generation=2,
            replicas=4,
            updated_replicas=1,
            available_replicas=3,
            conditions=[NS(type="Progressing", reason="ProgressDeadlineExceeded", message="quota")],
        ),
    )
    with pytest.raises(k8s_rollout.RolloutError, match="progress deadline exceeded: quota"):
        k8s_rollout.rolled_out(stuck)
    stuck.status.conditions = []
    assert k8s_rollout.rolled_out(stuck) == (False, "1 of 3 replicas updated")
    stuck.metadata.generation = 3
    assert k8s_rollout.rolled_out(stuck)[1] == "waiting for the controller to see the change"
