"""The service's OpenAPI document (bentos/openapi.py) agrees with the checks the service applies:
its example passes them, and what its schema refuses the service refuses too."""

from __future__ import annotations

import json

import pytest

from bentos import openapi
from churn.serving import RequestError, ServingSchema, check_row
from tests.helpers import openapi_validator

INFO = {
    "entity": "customer_id",
    "entity_dtype": "int64",
    "features": {
        "tenure_days": "int64",
        "spend_30d_usd": "float64",
        "plan": "str",
        "is_paused": "bool",
    },
    "bounds": {"tenure_days": [0, None], "spend_30d_usd": [0, 1e6]},
    "decision_threshold": 0.31,
    "model_name": "my-model",
    "model_version": "7",
    "run_id": "abc123",
    "trained_at": 1767225600000,
    "feature_set_version": "20260101T000000",
    "online_as_of": "2026-01-01T00:00:00",
    "sql_hashes": {"customer_profile": "0f0f"},
}
EXAMPLE = {
    "customer_id": 42,
    "features": {"tenure_days": 400, "spend_30d_usd": 12.5, "plan": "pro", "is_paused": None},
    "as_of": openapi.rfc3339("2026-01-01T00:00:00"),
}
ANSWER = {
    "customer_id": 42,
    "prediction": 0,
    "probability": 0.12,
    "model_version": "7",
    "latency_ms": 0.5,
    "request_id": "r1",
}
HEALTH = {"status": "healthy", "model_loaded": True, "model_version": "7", "reload_error": None}
METADATA = {
    **{k: INFO[k] for k in INFO if k != "bounds"},
    "bento_model": "my-model:abc",
    "scoring": "compiled",
    "reload_error": None,
}
BENTOML_BASE = {  # the part of BentoML's own document that is kept: its infrastructure endpoints
    "servers": [{"url": "."}],
    "paths": {
        "/readyz": {
            "get": {"tags": ["Infrastructure"], "responses": {"200": {"description": "ok"}}}
        },
        "/predict": {"post": {"tags": ["Service APIs"], "requestBody": {"additionalProp1": {}}}},
    },
}


def document(token: bool = True) -> dict:
    return openapi.document(
        json.loads(json.dumps(BENTOML_BASE)),
        title="churn (my-model)",
        description="# churn prediction service",
        info=INFO,
        example=EXAMPLE,
        answer=ANSWER,
        health=HEALTH,
        metadata=METADATA,
        docs={"predict": "One entity."},
        max_batch=50,
        max_body=1000,
        token=token,
    )


def request_schema(doc: dict, path: str) -> tuple[dict, object]:
    media = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    return media["schema"], media["example"]


def test_the_document_names_the_model_and_every_endpoint():
    doc = document()
    assert doc["info"] == {
        "title": "churn (my-model)",
        "version": "7",
        "description": "# churn prediction service",
    }
    assert set(doc["paths"]) == {
        "/predict",
        "/predict_batch",
        "/predict_by_id",
        "/health",
        "/metadata",
        "/readyz",
    }
    assert doc["paths"]["/predict"]["post"]["description"] == "One entity."
    assert "additionalProp1" not in json.dumps(doc)
    assert doc["security"] == [{"bearer": []}]
    assert doc["paths"]["/health"]["get"]["security"] == []  # open, as the guard keeps it
    assert doc["paths"]["/readyz"]["get"]["security"] == []
    assert "security" not in document(token=False)


@pytest.mark.parametrize("path", ["/predict", "/predict_batch", "/predict_by_id"])
def test_every_example_is_valid_by_the_schema_and_by_the_service(path):
    doc = document()
    schema, example = request_schema(doc, path)
    openapi_validator(doc, schema).validate(example)
    served = ServingSchema.from_dict(INFO)
    rows = example.get("rows", [example]) if path != "/predict_by_id" else []
    for row in rows:
        check_row(served, row, "")
    answered = doc["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]
    openapi_validator(doc, answered["schema"]).validate(answered["example"])


@pytest.mark.parametrize(("path", "schema"), [("/health", "Health"), ("/metadata", "Metadata")])
def test_health_and_metadata_are_documented_with_their_answers(path, schema):
    doc = document()
    answered = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
    assert answered["schema"] == {"$ref": f"#/components/schemas/{schema}"}
    openapi_validator(doc, answered["schema"]).validate(answered["example"])


@pytest.mark.parametrize(
    "broken",
    [
        lambda r: {**r, "features": {k: v for k, v in r["features"].items() if k != "plan"}},
        lambda r: {**r, "features": {**r["features"], "shoe_size": 3}},
        lambda r: {**r, "features": {**r["features"], "tenure_days": -1}},
        lambda r: {**r, "features": {**r["features"], "tenure_days": 1.5}},
        lambda r: {**r, "features": {**r["features"], "spend_30d_usd": 2e6}},
        lambda r: {**r, "features": {**r["features"], "plan": 3}},
        lambda r: {**r, "features": {**r["features"], "is_paused": 1}},
        lambda r: {**r, "features": {**r["features"], "plan": "x" * 300}},
        lambda r: {**r, "as_off": "2026-01-01"},
        lambda r: {k: v for k, v in r.items() if k != "customer_id"},
    ],
)
def test_what_the_schema_refuses_the_service_refuses(broken):
    doc = document()
    schema, example = request_schema(doc, "/predict")
    body = broken(json.loads(json.dumps(example)))
    assert list(openapi_validator(doc, schema).iter_errors(body))
    with pytest.raises(RequestError):
        check_row(ServingSchema.from_dict(INFO), body, "")


def test_times_are_rfc_3339_as_the_date_time_format_wants():
    assert openapi.rfc3339("2026-01-01T00:00:00") == "2026-01-01T00:00:00Z"
    assert openapi.rfc3339("2026-01-01T00:00:00+02:00") == "2026-01-01T00:00:00+02:00"


def test_refusals_are_documented_as_problem_documents():
    doc = document()
    responses = doc["paths"]["/predict_by_id"]["post"]["responses"]
    assert {"400", "401", "404", "413", "415", "422"} <= set(responses)
    assert "401" in doc["paths"]["/metadata"]["get"]["responses"]
    assert "401" not in document(token=False)["paths"]["/predict"]["post"]["responses"]
    for status, response in responses.items():
        if status == "200":
            continue
        media = response["content"]["application/problem+json"]
        openapi_validator(doc, media["schema"]).validate(media["example"])
        assert media["example"]["status"] == int(status)
