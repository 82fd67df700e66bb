"""The churn prediction service (BentoML). Imports neither Prefect nor MLflow.

Serves the model packaged by the ``package`` flow from the Bento model store: the scikit-learn
pipeline (skops, trusted types only), its feature schema and decision threshold, and the online
feature snapshot for predictions by customer id. Every answered prediction is logged.
"""

from __future__ import annotations

import os

# one math thread per worker: OpenMP fan-out hurts tail latency when cores are shared
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from http import HTTPStatus  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import bentoml  # noqa: E402
from bentoml.exceptions import BentoMLException  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from bentos.guard import Guard  # noqa: E402
from bentos.prediction_log import PredictionLog  # noqa: E402
from churn.serving import RequestError, ServingSchema, check_entity_id, check_features  # noqa: E402

MAX_BATCH = int(os.environ.get("CHURN_MAX_BATCH", "5000"))
MAX_BODY_BYTES = int(os.environ.get("CHURN_MAX_BODY_BYTES", str(4 * 1024 * 1024)))


class RequestRejected(BentoMLException):
    """A 4xx answer naming what was wrong; the service keeps serving."""

    error_code = HTTPStatus.UNPROCESSABLE_ENTITY


def _reject(exc: RequestError) -> RequestRejected:
    return RequestRejected(str(exc), error_code=HTTPStatus(exc.status))


async def _health(request: Request) -> JSONResponse:
    return JSONResponse(bentoml.get_current_service().health())


async def _metadata(request: Request) -> JSONResponse:
    return JSONResponse(bentoml.get_current_service().metadata())


# GET routes beside the POST APIs (BentoML's own /readyz, /livez and /metrics stay as they are)
info_app = Starlette(routes=[Route("/health", _health), Route("/metadata", _metadata)])


@bentoml.asgi_app(info_app, path="/")
@bentoml.service(name="churn", workers=1, traffic={"timeout": 30})
class ChurnService:
    model_ref = bentoml.models.BentoModel("churn-classifier:latest")

    def __init__(self) -> None:
        import pandas as pd
        import skops.io

        from churn.online import OnlineFeatures

        root = Path(self.model_ref.path)
        self.info = json.loads((root / "schema.json").read_text())
        self.schema = ServingSchema.from_dict(self.info)
        self.names = list(self.schema.features)
        self.model = skops.io.load(root / "model.skops", trusted=self.info["trusted_types"])
        self.online = OnlineFeatures(pd.read_parquet(root / "online_snapshot.parquet"), self.schema.entity, self.names)
        home = Path(os.environ.get("CHURN_HOME", ".churn"))
        self.log = PredictionLog(Path(os.environ.get("CHURN_PREDICTION_LOG_DIR", home / "predictions")))
        self._frame = pd.DataFrame

    def _score(self, ids: list, rows: list[list], started: float) -> list[dict]:
        """One predict_proba call for all rows; prediction applies the model's stored threshold."""
        frame = self._frame(rows, columns=self.names)
        for name, dtype in self.schema.features.items():
            frame[name] = frame[name].astype("float64" if dtype != "str" else "object")
        proba = self.model.predict_proba(frame)[:, 1]
        latency = round((time.perf_counter() - started) * 1000, 3)
        now = datetime.now(UTC).isoformat()
        version = self.info["model_version"]
        answers, records = [], []
        for entity_id, row, p in zip(ids, rows, proba):
            answer = {"customer_id": entity_id, "prediction": int(p >= self.schema.threshold),
                      "probability": round(float(p), 6), "model_version": version, "latency_ms": latency}
            answers.append(answer)
            records.append({"request_id": uuid.uuid4().hex, "ts": now, **answer,
                            "features": dict(zip(self.names, row))})
        self.log.write(records)
        return answers

    @bentoml.api
    def predict(self, customer_id: str | int, features: dict[str, Any]) -> dict:
        """One customer: the seed article's contract (customer_id and features in)."""
        started = time.perf_counter()
        try:
            entity_id = check_entity_id(self.schema, customer_id, "customer_id")
            row = check_features(self.schema, features)
        except RequestError as exc:
            raise _reject(exc) from None
        return self._score([entity_id], [row], started)[0]

    @bentoml.api
    def predict_batch(self, rows: list[dict[str, Any]]) -> list[dict]:
        """Many customers in one call, answered in order: each row is {customer_id, features}."""
        started = time.perf_counter()
        if not rows:
            raise RequestRejected("rows: empty batch")
        if len(rows) > MAX_BATCH:
            raise RequestRejected(f"rows: {len(rows)} rows exceed the limit of {MAX_BATCH}", error_code=HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        ids, values = [], []
        try:
            for i, row in enumerate(rows):
                if not isinstance(row, dict) or set(row) != {"customer_id", "features"}:
                    raise RequestError(f"rows[{i}]: expected exactly customer_id and features")
                ids.append(check_entity_id(self.schema, row["customer_id"], f"rows[{i}].customer_id"))
                values.append(check_features(self.schema, row["features"], f"rows[{i}].features"))
        except RequestError as exc:
            raise _reject(exc) from None
        return self._score(ids, values, started)

    @bentoml.api
    def predict_by_id(self, customer_ids: list[str | int]) -> list[dict]:
        """Customers by id; their features come from the online snapshot."""
        started = time.perf_counter()
        if not customer_ids:
            raise RequestRejected("customer_ids: empty list")
        if len(customer_ids) > MAX_BATCH:
            raise RequestRejected(f"customer_ids: {len(customer_ids)} ids exceed the limit of {MAX_BATCH}",
                                  error_code=HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        try:
            ids = [check_entity_id(self.schema, v, f"customer_ids[{i}]") for i, v in enumerate(customer_ids)]
        except RequestError as exc:
            raise _reject(exc) from None
        found, unknown = self.online.lookup(ids)
        if unknown:
            raise RequestRejected(f"unknown customer_ids: {unknown[:20]}", error_code=HTTPStatus.NOT_FOUND)
        return self._score(ids, [[found[i][n] for n in self.names] for i in ids], started)

    def health(self) -> dict:
        return {"status": "healthy", "model_loaded": self.model is not None, "model_version": self.info["model_version"]}

    def metadata(self) -> dict:
        keys = ("model_name", "model_version", "run_id", "trained_at", "feature_set_version", "online_as_of",
                "sql_hashes", "threshold", "entity")
        return {**{k: self.info[k] for k in keys}, "features": self.schema.features}


ChurnService.add_asgi_middleware(Guard, token=os.environ.get("CHURN_API_TOKEN") or None, max_body=MAX_BODY_BYTES)
