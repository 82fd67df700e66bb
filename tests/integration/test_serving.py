"""The BentoML service over HTTP: a champion packaged by the package flow, served by `bentoml serve`
on a free loopback port, every endpoint, input validation, and the prediction log count."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ops import stack
from ops.stack import free_port
from tests.helpers import ROOT, openapi_validator, train_champion

MAX_BATCH = 50
MAX_BODY = 200_000
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def service(prefect_server, small_world, tmp_path_factory):
    home = tmp_path_factory.mktemp("serving-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHURN_HOME", str(home))
        mp.setenv("CHURN_RAW_DIR", str(small_world))
        mp.setenv("BENTOML_HOME", str(home / "bentoml"))
        from flows.package import package

        trained = train_champion()
        packaged = package()
        port = free_port()
        env = {
            "CHURN_HOME": str(home),
            "BENTOML_HOME": str(home / "bentoml"),
            "CHURN_MAX_BATCH": str(MAX_BATCH),
            "CHURN_API_TOKEN": TOKEN,
            "CHURN_MAX_BODY_BYTES": str(MAX_BODY),
            "CHURN_RELOAD_SECONDS": "1",
        }
        directory = home / "serve"

        def start():
            stack.start_process(
                "bentoml",
                stack.serve_command(port),
                env,
                directory,
                ROOT,
            )
            stack.wait_healthy(f"http://127.0.0.1:{port}/readyz", 180, directory / "bentoml.log")

        try:
            start()
            snapshot = pd.read_parquet(
                next((home / "bentoml" / "models").rglob("online_snapshot.parquet"))
            )
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}",
                timeout=30,
                headers={"Authorization": f"Bearer {TOKEN}"},
            ) as client:
                yield {
                    "client": client,
                    "home": home,
                    "snapshot": snapshot,
                    "trained": trained,
                    "packaged": packaged,
                    "url": f"http://127.0.0.1:{port}",
                    "start": start,
                    "pid_file": directory / "bentoml.pid",
                }
        finally:
            stack.stop_process("bentoml", directory)


def features_of(service, index: int) -> tuple[int, dict]:
    row = service["snapshot"].iloc[index]
    values = {
        k: (None if pd.isna(v) else (v.item() if hasattr(v, "item") else v))
        for k, v in row.drop(["customer_id", "as_of"]).items()
    }
    return int(row["customer_id"]), values


def logged(service) -> list[dict]:
    return [
        json.loads(line)
        for path in (service["home"] / "predictions").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]


def test_health_and_metadata(service):
    client = service["client"]
    assert client.get("/health").json() == {
        "status": "healthy",
        "model_loaded": True,
        "model_version": service["packaged"].model_version,
        "reload_error": None,
    }
    meta = client.get("/metadata").json()
    assert (
        meta["model_version"] == service["packaged"].model_version
        and meta["run_id"] == service["trained"].run.run_id
    )
    assert meta["decision_threshold"] == pytest.approx(service["trained"].decision_threshold)
    assert (meta["entity"], meta["entity_dtype"]) == ("customer_id", "int64")
    assert meta["features"]["plan"] == "str" and meta["features"]["tenure_days"] == "int64"
    assert "customer_profile" in meta["sql_hashes"]
    for probe in ("/readyz", "/livez", "/metrics"):
        assert client.get(probe).status_code == 200


def test_swagger_shows_the_model_and_every_example_answers(service):
    """/docs.json (what Swagger at / reads): the model version, the service's README, typed
    schemas from the feature schema, /health and /metadata; each example is valid by its schema,
    answers 200 when POSTed as Swagger's "Try it out" sends it, and the answers match the schemas."""
    client = service["client"]
    assert client.get("/").status_code == 200
    doc = client.get("/docs.json").json()
    text = json.dumps(doc)
    readme = (ROOT / "bentos" / "README.md").read_text().rstrip()
    version = service["packaged"].model_version
    assert doc["info"]["title"] == "churn (churn-classifier)" and doc["info"]["version"] == version
    assert doc["info"]["description"].startswith(readme)
    assert f"version **{version}**" in doc["info"]["description"]
    assert "additionalProp1" not in text and "created with BentoML" not in text
    meta = client.get("/metadata").json()
    features = doc["components"]["schemas"]["Features"]
    assert list(features["properties"]) == list(meta["features"]) == features["required"]
    assert features["properties"]["tenure_days"]["type"] == "integer"
    assert features["properties"]["plan"]["type"] == "string"
    ids = set(service["snapshot"]["customer_id"].tolist())
    for path in ("/predict", "/predict_batch", "/predict_by_id"):
        operation = doc["paths"][path]["post"]
        media = operation["requestBody"]["content"]["application/json"]
        openapi_validator(doc, media["schema"]).validate(media["example"])
        answered = client.post(path, json=media["example"])
        assert answered.status_code == 200, (path, answered.text)
        answer_schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        openapi_validator(doc, answer_schema).validate(answered.json())
        example = operation["responses"]["200"]["content"]["application/json"]["example"]
        first = example[0] if isinstance(example, list) else example
        got = answered.json()[0] if isinstance(answered.json(), list) else answered.json()
        assert first["probability"] == pytest.approx(got["probability"])  # a real answer
        assert "422" in operation["responses"] and "413" in operation["responses"]
    assert (
        doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"][
            "customer_id"
        ]
        in ids
    )  # a real row of the snapshot the model carries
    for path in ("/health", "/metadata"):
        schema = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        openapi_validator(doc, schema["schema"]).validate(client.get(path).json())
    assert {"/readyz", "/livez", "/metrics"} <= set(doc["paths"])
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def metric_samples(url: str, name: str) -> dict[tuple, float]:
    """``name``'s samples on /metrics, keyed by their sorted labels."""
    from prometheus_client.parser import text_string_to_metric_families

    exposed = httpx.get(f"{url}/metrics", timeout=30).text
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposed)
        for sample in family.samples
        if sample.name == name
    }


def test_metrics_count_predictions_and_positives_by_model_version(service):
    client = service["client"]
    version = client.get("/health").json()["model_version"]

    def counted(prediction: str) -> float:
        samples = metric_samples(service["url"], "churn_predictions_total")
        return samples.get((("model_version", version), ("prediction", prediction)), 0.0)

    before = counted("1"), counted("0")
    ids = service["snapshot"]["customer_id"].head(30).tolist()
    answered = client.post("/predict_by_id", json={"ids": ids}).json()
    positives = sum(a["prediction"] for a in answered)
    assert (counted("1") - before[0], counted("0") - before[1]) == (positives, 30 - positives)
    serving = metric_samples(service["url"], "churn_model_info")
    tag = client.get("/metadata").json()["bento_model"]
    key = (("bento_model", tag), ("model_name", "churn-classifier"), ("model_version", version))
    assert serving[key] == 2  # both workers serve it


def test_predict_single_batch_and_by_id_agree(service):
    client = service["client"]
    ids, rows = zip(*(features_of(service, i) for i in range(5)))
    single = client.post("/predict", json={"customer_id": str(ids[0]), "features": rows[0]})
    assert single.status_code == 200, single.text
    body = single.json()
    assert (
        body["customer_id"] == ids[0] and body["model_version"] == service["packaged"].model_version
    )
    assert (
        body["prediction"] == int(body["probability"] >= service["trained"].decision_threshold)
        and body["latency_ms"] > 0
    )
    assert body["request_id"] in {r["request_id"] for r in logged(service)}
    batch = client.post(
        "/predict_batch",
        json={"rows": [{"customer_id": i, "features": r} for i, r in zip(ids, rows)]},
    )
    assert [b["customer_id"] for b in batch.json()] == list(ids)
    assert batch.json()[0]["probability"] == pytest.approx(body["probability"])
    by_id = client.post("/predict_by_id", json={"ids": list(reversed(ids))})
    assert [b["customer_id"] for b in by_id.json()] == list(reversed(ids))
    assert {b["customer_id"]: b["probability"] for b in by_id.json()} == pytest.approx(
        {b["customer_id"]: b["probability"] for b in batch.json()}
    )


@pytest.mark.parametrize(
    ("path", "payload", "status", "message"),
    [
        (
            "/predict",
            lambda f: {"customer_id": 1, "features": {k: v for k, v in f.items() if k != "plan"}},
            422,
            "missing features.plan",
        ),
        (
            "/predict",
            lambda f: {"customer_id": 1, "features": {**f, "shoe_size": 3}},
            422,
            "unknown features.shoe_size",
        ),
        (
            "/predict",
            lambda f: {"customer_id": 1, "features": {**f, "tenure_days": "long"}},
            422,
            "features.tenure_days: expected a number",
        ),
        (
            "/predict",
            lambda f: {"customer_id": 1, "features": {**f, "plan": 2}},
            422,
            "features.plan: expected a string",
        ),
        (
            "/predict",
            lambda f: {"customer_id": 1, "features": {**f, "monthly_fee_usd": float("inf")}},
            400,  # Infinity is not JSON: refused before any field is read
            "Infinity is not a JSON number",
        ),
        (
            "/predict",
            lambda f: {"customer_id": "abc", "features": f},
            422,
            "customer_id: expected an integer id",
        ),
        ("/predict_batch", lambda f: {"rows": []}, 422, "rows: empty list"),
        ("/predict", lambda f: {"id": 1, "features": f}, 422, "missing customer_id; unknown id"),
        (
            "/predict",
            lambda f: {"customer_id": 1, "features": f, "as_off": "2026-01-01"},
            422,
            "unknown as_off",
        ),
        (
            "/predict_batch",
            lambda f: {"rows": [{"customer_id": 1, "features": f}], "extra": 1},
            422,
            "unknown extra",
        ),
        (
            "/predict_batch",
            lambda f: {"rows": [{"customer_id": 1, "features": f}] * (MAX_BATCH + 1)},
            413,
            "exceed the limit",
        ),
        (
            "/predict_batch",
            lambda f: {"rows": [{"customer_id": 1, "features": f}, {"customer_id": 2}]},
            422,
            "rows[1]",
        ),
        ("/predict_by_id", lambda f: {"ids": [1, 2]}, 404, "unknown ids: [1, 2]"),
        (
            "/predict_by_id",
            lambda f: {"customer_ids": [1]},
            422,
            "missing ids; unknown customer_ids",
        ),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_field(service, path, payload, status, message):
    client = service["client"]
    before = len(logged(service))
    _, features = features_of(service, 0)
    response = client.post(
        path, content=json.dumps(payload(features)), headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert message in response.text
    assert len(logged(service)) == before  # nothing answered, nothing logged
    assert client.get("/health").status_code == 200  # and the service keeps serving


def test_every_answered_prediction_is_logged(service):
    client = service["client"]
    before = len(logged(service))
    ids = [features_of(service, i)[0] for i in range(20)]
    answered = 0
    for start in range(0, 20, 4):
        response = client.post("/predict_by_id", json={"ids": ids[start : start + 4]})
        assert response.status_code == 200
        answered += len(response.json())
    records = logged(service)[before:]
    assert len(records) == answered == 20
    assert {
        "request_id",
        "ts",
        "customer_id",
        "features",
        "probability",
        "prediction",
        "model_version",
        "latency_ms",
    } <= set(records[0])
    import duckdb

    count = duckdb.sql(
        f"select count(*) from read_json('{service['home']}/predictions/*.jsonl')"
    ).fetchall()[0][0]
    assert count == len(logged(service))


def test_bearer_token_guards_everything_but_health_readiness_and_metrics(service):
    with httpx.Client(base_url=service["url"], timeout=30) as anonymous:
        for path in ("/health", "/readyz", "/livez", "/metrics"):
            assert anonymous.get(path).status_code == 200, path
        assert anonymous.get("/metadata").status_code == 401
        denied = anonymous.post("/predict_by_id", json={"ids": [features_of(service, 0)[0]]})
        assert denied.status_code == 401 and "bearer token" in denied.text
        wrong = anonymous.post(
            "/predict_by_id", json={"ids": [1]}, headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401


def test_oversized_bodies_are_refused_before_the_model(service):
    client = service["client"]
    before = len(logged(service))
    _, features = features_of(service, 0)
    huge = {"rows": [{"customer_id": 1, "features": features}] * 2000}
    response = client.post("/predict_batch", json=huge)
    assert response.status_code == 413 and "exceeds the limit" in response.text

    def chunks():  # no Content-Length: the limit still holds while streaming
        blob = json.dumps(huge).encode()
        for start in range(0, len(blob), 65536):
            yield blob[start : start + 65536]

    streamed = client.post(
        "/predict_batch", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert len(logged(service)) == before and client.get("/health").status_code == 200


DOCKER_INSTRUCTIONS = {
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
}


def test_built_bento_carries_model_labels_lean_requirements_and_a_dockerfile(service):
    import yaml

    packaged = service["packaged"]
    bento_dir = Path(packaged.bento_path)
    bento = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    assert (
        bento["labels"]["model_version"] == packaged.model_version
        and bento["labels"]["run_id"] == service["trained"].run.run_id
    )
    assert any(k.startswith("sql_customer_") for k in bento["labels"])
    assert [m["tag"] for s in bento["services"] for m in s["models"]] == [packaged.tag]
    import re

    imported = set(
        re.findall(r"from (churn\.\w+) import", (ROOT / "bentos" / "service.py").read_text())
    )
    imported |= set(
        re.findall(r"from (churn\.\w+) import", (ROOT / "bentos" / "prediction_log.py").read_text())
    )
    assert imported and all(
        (Path(packaged.bento_path) / "src" / (m.replace(".", "/") + ".py")).is_file()
        for m in imported
    )
    # bentofile.yaml's description is the Bento's README (Swagger's text when served from the Bento)
    assert (bento_dir / "README.md").read_text() == (ROOT / "bentos" / "README.md").read_text()
    requirements = (bento_dir / "env" / "python" / "requirements.txt").read_text()
    assert (
        "scikit-learn" in requirements
        and "mlflow" not in requirements
        and "prefect" not in requirements
    )
    dockerfile = (bento_dir / "env" / "docker" / "Dockerfile").read_text()
    lines = [
        l.strip()
        for l in dockerfile.replace("\\\n", " ").splitlines()
        if l.strip() and not l.strip().startswith("#")
    ]
    assert lines and lines[0].split()[0].upper() in {"FROM", "ARG"}
    assert all(l.split()[0].upper() in DOCKER_INSTRUCTIONS for l in lines), [
        l for l in lines if l.split()[0].upper() not in DOCKER_INSTRUCTIONS
    ]
    assert any(l.upper().startswith("ENTRYPOINT") for l in lines)


def test_a_newly_packaged_model_is_picked_up_by_every_worker(service):
    from flows.package import package

    repackaged = package()
    assert repackaged.tag != service["packaged"].tag
    deadline = time.monotonic() + 120
    seen = set()
    while time.monotonic() < deadline and seen != {repackaged.tag}:
        # new connections spread over the workers; each must answer with the new model
        seen = {
            httpx.get(
                f"{service['url']}/metadata", headers={"Authorization": f"Bearer {TOKEN}"}
            ).json()["bento_model"]
            for _ in range(8)
        }
        time.sleep(0.5)
    assert seen == {repackaged.tag}
    assert service["client"].get("/metadata").json()["scoring"] == "compiled"
    serving = {
        dict(labels)["bento_model"]: value
        for labels, value in metric_samples(service["url"], "churn_model_info").items()
    }
    assert serving[repackaged.tag] == 2 and serving[service["packaged"].tag] == 0
    doc = service["client"].get("/docs.json").json()  # the document follows the model
    assert doc["info"]["version"] == repackaged.model_version
    assert repackaged.tag in doc["info"]["description"]


def test_under_load_a_killed_service_loses_no_answered_prediction(service):
    """8 clients hammer the service; it is killed (SIGKILL) mid-load; every answered request is in the log."""
    ids = [int(i) for i in service["snapshot"]["customer_id"].head(40)]
    answered, failures, stop = [], [], threading.Event()

    def client_loop(offset: int):
        with httpx.Client(
            base_url=service["url"], timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client:
            k = offset
            while not stop.is_set():
                try:
                    response = client.post(
                        "/predict_by_id", json={"ids": [ids[k % len(ids)], ids[(k + 1) % len(ids)]]}
                    )
                except httpx.HTTPError:
                    failures.append(k)
                    return
                assert response.status_code == 200, response.text
                answered.extend((r["request_id"], r["customer_id"]) for r in response.json())
                k += 1

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while len(answered) < 400 and time.monotonic() < deadline:
        time.sleep(0.05)
    server = int(service["pid_file"].read_text())
    for pid in [
        server,
        *stack.descendants(server),
    ]:  # the server and its workers; no shutdown hook runs
        os.kill(pid, signal.SIGKILL)
    for t in threads:  # each client runs until the dead service fails its request
        t.join(60)
    stop.set()
    assert len(answered) >= 400 and len(failures) == 8  # the load was running when the service died
    records = logged(service)
    logged_pairs = {(r["request_id"], r["customer_id"]) for r in records}
    assert set(answered) <= logged_pairs
    service["pid_file"].unlink()
    service["start"]()  # a restart keeps the old files and appends to new ones
    assert service["client"].post("/predict_by_id", json={"ids": ids[:3]}).status_code == 200
    assert len(logged(service)) == len(records) + 3


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "detail"),
    [
        ("POST", "/nowhere", b"{}", {}, 404, "no such path: /nowhere"),
        ("GET", "/predict", None, {}, 405, "/predict takes POST"),
        (
            "POST",
            "/predict",
            b"{}",
            {"content-type": "text/plain"},
            415,
            "Content-Type must be application/json, got text/plain",
        ),
        (
            "POST",
            "/predict",
            b"--x",
            {"content-type": "multipart/form-data"},
            415,
            "got multipart/form-data",
        ),
        (
            "POST",
            "/predict",
            b'{"customer_id": 1, "customer_id": 2}',
            {},
            400,
            "duplicate key 'customer_id'",
        ),
        ("POST", "/predict", b'{"customer_id": NaN}', {}, 400, "NaN is not a JSON number"),
        (
            "POST",
            "/predict",
            b'{"customer_id": ' + b"1" * 5000 + b"}",
            {},
            400,
            "body: not valid JSON",
        ),
        ("POST", "/predict", b"[1, 2]", {}, 400, "body: expected a JSON object, got list"),
        ("POST", "/predict", b"{", {}, 400, "body: not valid JSON"),
        ("POST", "/predict_batch", b'{"rows": [1]}', {}, 422, "rows[0]: expected a JSON object"),
    ],
)
def test_every_refusal_is_one_problem_document_naming_what_was_wrong(
    service, method, path, body, headers, status, detail
):
    client = service["client"]
    before = len(logged(service))
    sent = {"content-type": "application/json", **headers}
    response = client.request(method, path, content=body, headers=sent)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    document = response.json()
    assert (
        document["status"] == status
        and document["type"] == "about:blank"
        and detail in document["detail"]
    )
    assert len(logged(service)) == before and client.get("/health").status_code == 200


def test_a_value_the_model_never_saw_is_refused_not_logged(service):
    client = service["client"]
    entity_id, features = features_of(service, 0)
    for wrong, message in (
        ({**features, "tenure_days": -3}, "features.tenure_days: -3 is outside [0,"),
        ({**features, "monthly_fee_usd": 1e308}, "features.monthly_fee_usd: 1e+308 is outside"),
        ({**features, "orders_30d": 2**64}, "features.orders_30d: 18446744073709551616 is outside"),
    ):
        response = client.post("/predict", json={"customer_id": entity_id, "features": wrong})
        assert response.status_code == 422 and message in response.json()["detail"], response.text
    huge_id = client.post("/predict", json={"customer_id": "9" * 4000, "features": features})
    assert huge_id.status_code == 422 and len(huge_id.text) < 400


# --- a hostile client: generated bodies, headers and content types against every endpoint --------

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(
        [
            "",
            "--5",
            "²",
            "①",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-05:00",
            "NaN",
            "1e400",
            "true",
        ]
    ),
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _mutated(draw, valid: dict) -> dict:
    """A valid body with one part broken: a value replaced, a key dropped, renamed or added."""
    body = json.loads(json.dumps(valid))
    target = body
    path = []
    while isinstance(target, (dict, list)) and target and draw(st.booleans()):
        key = draw(
            st.sampled_from(
                sorted(target) if isinstance(target, dict) else list(range(len(target)))
            )
        )
        path.append(key)
        if not isinstance(target[key], (dict, list)):
            break
        target = target[key]
    action = draw(st.sampled_from(["replace", "drop", "rename", "add"]))
    container = body
    for key in path[:-1]:
        container = container[key]
    key = path[-1] if path else None
    if key is None:
        return (
            draw(JSON) if action == "replace" else {**body, draw(st.text(max_size=8)): draw(JSON)}
        )
    if action == "replace":
        container[key] = draw(JSON)
    elif action == "drop" and isinstance(container, dict):
        container.pop(key)
    elif action == "rename" and isinstance(container, dict):
        container[draw(st.text(max_size=10))] = container.pop(key)
    elif isinstance(container, dict):
        container[draw(st.text(max_size=10))] = draw(JSON)
    return body


@st.composite
def requests(draw, service_features):
    entity_id, features = service_features
    valid = {
        "/predict": {
            "customer_id": entity_id,
            "features": features,
            "as_of": "2026-01-01T00:00:00",
        },
        "/predict_batch": {"rows": [{"customer_id": entity_id, "features": features}] * 2},
        "/predict_by_id": {"ids": [entity_id]},
    }
    path = draw(st.sampled_from(sorted(valid)))
    body = json.dumps(_mutated(draw, valid[path])).encode()
    if draw(st.integers(0, 9)) == 0:  # raw text: duplicate keys, NaN, truncation, huge literals
        body = draw(
            st.sampled_from(
                [
                    body[: max(1, len(body) // 2)],
                    body.replace(b"{", b'{"ids": 1, "ids": 2, ', 1),
                    body.replace(b"true", b"NaN"),
                    b'{"customer_id": ' + b"9" * 5000 + b"}",
                ]
            )
        )
    content_type = draw(
        st.sampled_from(
            ["application/json"] * 6
            + ["text/plain", "multipart/form-data", "application/json; charset=utf-8", ""]
        )
    )
    return path, body, content_type


def test_no_generated_request_gets_a_5xx_and_the_monitor_still_judges_the_window(service):
    from datetime import UTC, datetime, timedelta

    from churn.params import MonitorParams, RetrainPolicy
    from flows.monitor import monitor

    client = service["client"]
    started = datetime.now(UTC).replace(tzinfo=None)
    seen: dict[int, int] = {}

    @settings(
        max_examples=540,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests(features_of(service, 0)))
    def hostile(request):
        path, body, content_type = request
        response = client.post(
            path, content=body, headers={"content-type": content_type} if content_type else {}
        )
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, (path, body[:300], response.text[:300])
        if response.status_code >= 400:
            document = response.json()
            assert document["status"] == response.status_code and document["detail"], response.text
            assert len(response.text) < 2000  # a rejected value is echoed only as a short prefix

    hostile()
    assert sum(seen.values()) >= 540 and seen.get(200, 0) > 0 and len(seen) >= 4, seen
    assert client.get("/health").json()["status"] == "healthy"
    judged = monitor(
        MonitorParams(
            window_start=started,
            window_end=datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=1),
            alerts={"min_rows": 1},
            retrain=RetrainPolicy(enabled=False),
            report_sample_rows=100,
        )
    )
    assert (
        judged.count == sum(1 for r in logged(service) if r["ts"] >= started.isoformat())
        and judged.count > 0
    )


def test_metrics_stay_bounded_whatever_paths_clients_make_up(service):
    client = service["client"]
    made_up = [f"/probe-{k}-{'x' * 20}" for k in range(300)]
    for path in made_up:
        assert client.get(path).status_code == 404
    assert (
        client.post("/predict_by_id", json={"ids": [features_of(service, 0)[0]]}).status_code == 200
    )
    exposed = httpx.get(f"{service['url']}/metrics", timeout=30).text
    assert not any(path in exposed for path in made_up)
    assert 'churn_http_requests_total{route="other",status="404"}' in exposed
    assert 'churn_predictions_total{model_version="' in exposed
    assert len(exposed) < 400_000


def test_a_body_of_countless_empty_rows_is_refused_before_it_is_parsed(service):
    client = service["client"]
    empty_rows = (
        b'{"rows": [' + b"{}," * 60_000 + b"{}]}"
    )  # under the byte limit, far over the row limit
    zeros = b'{"ids": [' + b"0," * 90_000 + b"0]}"
    for body in (empty_rows, zeros):
        assert len(body) < MAX_BODY
        response = client.post(
            "/predict_batch" if body is empty_rows else "/predict_by_id",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 413 and "too many values" in response.json()["detail"], (
            response.text
        )
