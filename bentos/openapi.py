"""The service's OpenAPI document, derived from the packaged model (what Swagger at ``/`` shows).

BentoML builds its document from the APIs' Python types; ours take the whole JSON body
(``dict[str, Any]``) so the guard and ``churn.serving`` can refuse a bad body by name with a
problem document, and BentoML's document shows a useless ``{"additionalProp1": ...}`` body. This
module writes the document the service really speaks: request and response schemas from the model's
feature schema (entity name and type, every feature's name, type and declared range, ``as_of``), a
real example row from the online snapshot the model carries (it passes the service's checks, so
Swagger's "Try it out" answers 200), the problem documents every refusal returns, ``/health`` and
``/metadata``, the model version as the document's version and the service's README as its
description. Only BentoML's infrastructure endpoints (``/readyz``, ``/livez``, ``/metrics``...) are
kept from its own document. Pure: plain dicts in, a dict out.
"""

from __future__ import annotations

import math
from http import HTTPStatus
from typing import Any

from churn.serving import MAX_MAGNITUDE, MAX_TEXT

OPENAPI_VERSION = "3.0.2"
"""The version BentoML's Swagger UI is served with."""
INFRA_TAG = "Infrastructure"
PREDICT_TAG = "Predictions"
MODEL_TAG = "Model"

_REF = "#/components/schemas/{}"
_PROBLEM = "application/problem+json"


def ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name)}


def feature_schema(dtype: str, low: float | None, high: float | None) -> dict[str, Any]:
    """One feature's value as the service accepts it: its dtype, its declared range, or null."""
    if dtype == "bool":
        schema: dict[str, Any] = {"type": "boolean"}
    elif dtype == "str":
        schema = {"type": "string", "maxLength": MAX_TEXT}
    else:
        # the service's range: the view's declared min/max within +-MAX_MAGNITUDE
        lowest = max(low, -MAX_MAGNITUDE) if low is not None else -MAX_MAGNITUDE
        highest = min(high, MAX_MAGNITUDE) if high is not None else MAX_MAGNITUDE
        integer = dtype == "int64"
        schema = {
            "type": "integer" if integer else "number",
            "format": "int64" if integer else "double",
            "minimum": math.ceil(lowest) if integer else lowest,
            "maximum": math.floor(highest) if integer else highest,
        }
    schema["nullable"] = True
    schema["description"] = f"{dtype}; null when unknown (the model imputes it)"
    return schema


def entity_schema(entity: str, dtype: str, answer: bool = False) -> dict[str, Any]:
    """An entity id: a 64-bit integer (a decimal string is accepted too) or a string."""
    if dtype == "int64":
        schema: dict[str, Any] = {
            "type": "integer",
            "format": "int64",
            "description": f"the {entity} (64-bit integer)"
            + ("" if answer else "; a string of decimal digits is accepted too"),
        }
    else:
        schema = {
            "type": "string",
            "maxLength": MAX_TEXT,
            "description": f"the {entity}" + ("" if answer else "; an integer is accepted too"),
        }
    return schema


def schemas(info: dict[str, Any], max_batch: int) -> dict[str, Any]:
    """The request, response and problem schemas of a packaged model's ``schema.json``."""
    entity, dtype = info["entity"], info["entity_dtype"]
    bounds = info.get("bounds") or {}
    features = {
        name: feature_schema(kind, *(bounds.get(name) or (None, None)))
        for name, kind in info["features"].items()
    }
    return {
        "Features": {
            "type": "object",
            "description": "every feature the model was fitted on, each present (null when unknown), "
            "no other key",
            "properties": features,
            "required": list(features),
            "additionalProperties": False,
        },
        "Row": {
            "type": "object",
            "properties": {
                entity: entity_schema(entity, dtype),
                "features": ref("Features"),
                "as_of": {
                    "type": "string",
                    "format": "date-time",
                    "description": "the time the features describe (ISO 8601, UTC if no offset; "
                    "years 1900-2199); default: the request time. The monitor matches outcomes "
                    "by it.",
                },
            },
            "required": [entity, "features"],
            "additionalProperties": False,
        },
        "BatchRequest": {
            "type": "object",
            "properties": {
                "rows": {
                    "type": "array",
                    "items": ref("Row"),
                    "minItems": 1,
                    "maxItems": max_batch,
                }
            },
            "required": ["rows"],
            "additionalProperties": False,
        },
        "ByIdRequest": {
            "type": "object",
            "properties": {
                "ids": {
                    "type": "array",
                    "items": entity_schema(entity, dtype),
                    "minItems": 1,
                    "maxItems": max_batch,
                    "description": f"{entity} values of the online snapshot "
                    f"(as of {info.get('online_as_of')})",
                }
            },
            "required": ["ids"],
            "additionalProperties": False,
        },
        "Prediction": {
            "type": "object",
            "properties": {
                entity: entity_schema(entity, dtype, answer=True),
                "prediction": {
                    "type": "integer",
                    "enum": [0, 1],
                    "description": "1 when probability >= the model's decision threshold "
                    f"({float(info['decision_threshold']):.4f})",
                },
                "probability": {"type": "number", "minimum": 0, "maximum": 1},
                "model_version": {"type": "string"},
                "latency_ms": {
                    "type": "number",
                    "description": "checking and scoring this request",
                },
                "request_id": {
                    "type": "string",
                    "description": "one per HTTP request, also in the prediction log",
                },
            },
            "required": [
                entity,
                "prediction",
                "probability",
                "model_version",
                "latency_ms",
                "request_id",
            ],
            "additionalProperties": False,
        },
        "Predictions": {"type": "array", "items": ref("Prediction")},
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem document",
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {
                    "type": "string",
                    "description": "what was wrong, naming the field; a rejected value is "
                    "echoed only as a short prefix",
                },
            },
            "required": ["type", "title", "status", "detail"],
        },
        "Health": {
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": ["healthy"]},
                "model_loaded": {"type": "boolean"},
                "model_version": {"type": "string"},
                "reload_error": {
                    "type": "string",
                    "nullable": True,
                    "description": "why the newest packaged model could not be loaded (the "
                    "loaded one keeps serving)",
                },
            },
            "required": ["status", "model_loaded", "model_version", "reload_error"],
        },
        "Metadata": {
            "type": "object",
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "run_id": {"type": "string", "description": "the MLflow training run"},
                "trained_at": {
                    "type": "integer",
                    "description": "the training run's start, milliseconds since the epoch",
                },
                "feature_set_version": {"type": "string"},
                "online_as_of": {
                    "type": "string",
                    "description": "the time the online snapshot's features describe",
                },
                "sql_hashes": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "each feature view's SQL hash",
                },
                "decision_threshold": {"type": "number"},
                "entity": {"type": "string"},
                "entity_dtype": {"type": "string", "enum": ["int64", "str"]},
                "features": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "string",
                        "enum": ["int64", "float64", "bool", "str"],
                    },
                    "description": "feature name -> dtype, in model order",
                },
                "bento_model": {"type": "string"},
                "scoring": {"type": "string", "enum": ["compiled", "pipeline"]},
                "reload_error": {"type": "string", "nullable": True},
            },
            "required": [
                "model_name",
                "model_version",
                "run_id",
                "feature_set_version",
                "online_as_of",
                "decision_threshold",
                "entity",
                "entity_dtype",
                "features",
                "bento_model",
                "scoring",
            ],
        },
    }


def _json(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"application/json": media}


def _problems(*statuses: tuple[int, str, str]) -> dict[str, Any]:
    return {
        str(status): {
            "description": description,
            "content": {
                _PROBLEM: {
                    "schema": ref("Problem"),
                    "example": {
                        "type": "about:blank",
                        "title": HTTPStatus(status).phrase,
                        "status": status,
                        "detail": detail,
                    },
                }
            },
        }
        for status, description, detail in statuses
    }


def _post(
    operation: str,
    summary: str,
    description: str,
    request: str,
    request_example: Any,
    answer: str,
    answer_example: Any,
    entity: str,
    feature: str,
    max_batch: int,
    max_body: int,
    token: bool,
    unknown_ids: bool = False,
) -> dict[str, Any]:
    refusals = [
        (
            400,
            "not one strict JSON object (duplicate keys, NaN or Infinity, not JSON)",
            "body: not valid JSON (Expecting value: line 1 column 1 (char 0))",
        ),
        (
            413,
            f"a body over {max_body} bytes, or more than {max_batch} rows or ids",
            f"request body exceeds the limit of {max_body} bytes",
        ),
        (415, "Content-Type is not application/json", "Content-Type must be application/json"),
        (
            422,
            "a missing, unknown or mistyped key or feature, or a value outside its range",
            f"missing features.{feature}",
        ),
    ]
    if token:
        refusals.append((401, "no or a wrong bearer token", "missing or invalid bearer token"))
    if unknown_ids:
        refusals.append((404, "an id that is not in the online snapshot", "unknown ids: [-1]"))
    return {
        "post": {
            "operationId": operation,
            "summary": summary,
            "description": description,
            "tags": [PREDICT_TAG],
            "requestBody": {"required": True, "content": _json(ref(request), request_example)},
            "responses": {
                "200": {"description": "answered", "content": _json(ref(answer), answer_example)},
                **_problems(*sorted(refusals)),
            },
        }
    }


def _get(
    operation: str, summary: str, schema: str, example: Any, open_path: bool, token: bool
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": operation,
        "summary": summary,
        "tags": [MODEL_TAG],
        "responses": {"200": {"description": summary, "content": _json(ref(schema), example)}},
    }
    if open_path:
        op["security"] = []
    elif token:
        op["responses"].update(
            _problems((401, "no or a wrong bearer token", "missing or invalid bearer token"))
        )
    return {"get": op}


def document(
    base: dict[str, Any],
    *,
    title: str,
    description: str,
    info: dict[str, Any],
    example: dict[str, Any],
    answer: dict[str, Any],
    health: dict[str, Any],
    metadata: dict[str, Any],
    docs: dict[str, str],
    max_batch: int,
    max_body: int,
    token: bool,
) -> dict[str, Any]:
    """The OpenAPI document of a service serving the model of ``info`` (its ``schema.json``).

    ``base`` is BentoML's own document (its infrastructure endpoints are kept); ``example`` one
    request row ``{<entity>, features, as_of}`` that passes the service's checks and ``answer``
    the service's answer to it; ``health`` and ``metadata`` the service's answers to those GETs;
    ``docs`` the APIs' descriptions by name; ``token``: requests need a bearer token.
    """
    entity = info["entity"]
    common = {
        "entity": entity,
        "feature": next(iter(info["features"])),
        "max_batch": max_batch,
        "max_body": max_body,
        "token": token,
    }
    infra = {
        path: item
        for path, item in (base.get("paths") or {}).items()
        if any(INFRA_TAG in (op.get("tags") or []) for op in item.values() if isinstance(op, dict))
    }
    if token:
        for item in infra.values():
            for op in item.values():
                if isinstance(op, dict):
                    op["security"] = []  # health, readiness and metrics need no token
    paths: dict[str, Any] = {
        "/predict": _post(
            "predict",
            f"score one {entity} from its features",
            docs.get("predict", ""),
            "Row",
            example,
            "Prediction",
            answer,
            **common,
        ),
        "/predict_batch": _post(
            "predict_batch",
            "score many rows in one call, answered in order",
            docs.get("predict_batch", ""),
            "BatchRequest",
            {"rows": [example]},
            "Predictions",
            [answer],
            **common,
        ),
        "/predict_by_id": _post(
            "predict_by_id",
            f"score {entity} values from the online snapshot",
            docs.get("predict_by_id", ""),
            "ByIdRequest",
            {"ids": [example[entity]]},
            "Predictions",
            [answer],
            unknown_ids=True,
            **common,
        ),
        "/health": _get(
            "health", "the loaded model and reload state", "Health", health, True, token
        ),
        "/metadata": _get(
            "metadata",
            "the model's lineage, entity, features and decision threshold",
            "Metadata",
            metadata,
            False,
            token,
        ),
        **infra,
    }
    components: dict[str, Any] = {"schemas": schemas(info, max_batch)}
    spec: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": str(info["model_version"]),
            "description": description,
        },
        "servers": base.get("servers") or [{"url": "."}],
        "tags": [
            {"name": PREDICT_TAG, "description": "score rows; every answer is logged"},
            {"name": MODEL_TAG, "description": "what is being served"},
            {
                "name": INFRA_TAG,
                "description": "BentoML's readiness, liveness and Prometheus endpoints",
            },
        ],
        "paths": paths,
        "components": components,
    }
    if token:
        components["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "the service's CHURN_API_TOKEN",
            }
        }
        spec["security"] = [{"bearer": []}]
    return spec


def rfc3339(iso: str) -> str:
    """An ISO 8601 time as RFC 3339 (the OpenAPI ``date-time`` format): naive times are UTC."""
    from datetime import datetime

    return iso + "Z" if datetime.fromisoformat(iso).tzinfo is None else iso


def model_summary(info: dict[str, Any], tag: str) -> str:
    """One markdown paragraph on what is served, appended to the README in the description."""
    return (
        f"**Serving** `{info['model_name']}` version **{info['model_version']}** (Bento model "
        f"`{tag}`, MLflow run `{info['run_id']}`, feature set `{info['feature_set_version']}`, "
        f"online snapshot as of {info['online_as_of']}); entity `{info['entity']}` "
        f"({info['entity_dtype']}), {len(info['features'])} features, decision threshold "
        f"{float(info['decision_threshold']):.4f}."
    )
