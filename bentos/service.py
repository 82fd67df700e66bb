"""The churn prediction service (BentoML). Imports neither Prefect nor MLflow.

Serves the model packaged by the ``package`` flow from the Bento model store: the scikit-learn
pipeline (skops, trusted types only), its feature schema and decision threshold, and the online
feature snapshot for predictions by id. Requests name the entity as the feature repo does (e.g.
``customer_id``). Every answered prediction is logged (``churn.predictions``) before it is returned:
written to its file, or on an object store buffered and written within ``CHURN_LOG_FLUSH_SECONDS``
(``bentos/prediction_log.py`` says what a crash may lose).
"""

from __future__ import annotations

import os

# one math thread per worker: OpenMP fan-out hurts tail latency when cores are shared
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import logging  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import bentoml  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from bentos import openapi  # noqa: E402
from bentos.guard import Guard, problem  # noqa: E402
from bentos.metrics import bound_bentoml_metrics, metrics  # noqa: E402
from bentos.prediction_log import open_log  # noqa: E402
from churn.predictions import record  # noqa: E402
from churn.serving import (  # noqa: E402
    RequestError,
    ServingSchema,
    check_count,
    check_entity_id,
    check_keys,
    check_row,
)
from churn.serving import shown as shown_value  # noqa: E402
from churn.settings import ServiceSettings  # noqa: E402

# a built Bento's arguments (empty when served from the source): the names it was packaged with
SETTINGS = ServiceSettings.from_env(built=vars(bentoml.use_arguments()))
log = logging.getLogger("churn.service")


def _refuse(exc: RequestError, path: str) -> Response:
    """A 4xx problem document naming what was wrong, logged in one line; the service keeps serving."""
    log.info("%s %s: %s", exc.status, path, exc)
    body, headers = problem(exc.status, str(exc))
    return Response(
        body, status_code=exc.status, headers={k.decode(): v.decode() for k, v in headers}
    )


async def _health(request: Request) -> JSONResponse:
    return JSONResponse(bentoml.get_current_service().health())


async def _metadata(request: Request) -> JSONResponse:
    return JSONResponse(bentoml.get_current_service().metadata())


# GET routes beside the POST APIs (BentoML's own /readyz, /livez and /metrics stay as they are)
info_app = Starlette(routes=[Route("/health", _health), Route("/metadata", _metadata)])


class LoadedModel:
    """One packaged model directory: schema, verified scorer and online snapshot, swapped as a whole on reload."""

    def __init__(self, root: Path, tag: str):
        import pandas as pd
        import skops.io

        from churn.online import OnlineFeatures
        from churn.scoring import compile_scorer, plain_rows

        self.tag = tag
        self.info = json.loads((root / "schema.json").read_text())
        self.schema = ServingSchema.from_dict(self.info)
        self.names = list(self.schema.features)
        model = skops.io.load(root / "model.skops", trusted=self.info["trusted_types"])
        snapshot = pd.read_parquet(root / "online_snapshot.parquet")
        self.online = OnlineFeatures(snapshot, self.schema.entity, self.names)
        sample = plain_rows(snapshot[self.names].head(256))
        pipeline = (
            model.estimator.estimator
        )  # FixedThresholdClassifier -> FrozenEstimator -> Pipeline
        self.scorer = compile_scorer(pipeline, self.names, self.schema.features).verified(
            [*sample, [None] * len(self.names)]
        )
        self.example = self._example(snapshot[self.schema.entity].head(100).tolist())
        self.openapi: bytes | None = None
        """The OpenAPI document for this model, built on first request (``openapi_document``)."""

    def _example(self, ids: list[Any]) -> dict[str, Any]:
        """A /predict body from the first snapshot row that passes the service's own checks: the
        example Swagger shows and its "Try it out" sends."""
        rows = [
            {
                self.schema.entity: entity_id,
                "features": self.online.get(entity_id),
                "as_of": openapi.rfc3339(self.info["online_as_of"]),
            }
            for entity_id in ids
        ]
        for row in rows:
            try:
                check_row(self.schema, row, "")
            except RequestError:
                continue
            return row
        return rows[0]


def _serving(loaded: LoadedModel, workers: int) -> None:
    """``churn_model_info{model_name,model_version,bento_model}``: this worker serves it (1) or not (0)."""
    info = loaded.info
    metrics().model.labels(info["model_name"], info["model_version"], loaded.tag).set(workers)


@bentoml.asgi_app(info_app, path="/")
@bentoml.service(
    name=SETTINGS.service_name,
    workers=SETTINGS.workers,
    traffic={"timeout": 30},
    logging={"access": {"enabled": SETTINGS.access_log}},
)
class ChurnService:
    model_ref = bentoml.models.BentoModel(f"{SETTINGS.model_name}:latest")

    def __init__(self) -> None:
        # the model reference resolved in the store when this module was imported
        self.current = LoadedModel(Path(self.model_ref.path), str(self.model_ref.tag))
        _serving(self.current, 1)
        self.reload_error: str | None = None
        self.log = open_log(SETTINGS)
        if SETTINGS.reload_seconds > 0:
            threading.Thread(
                target=self._follow_model_store, name="model-reload", daemon=True
            ).start()

    @bentoml.on_shutdown
    def _close_log(self) -> None:
        """Write what the object-store log still buffers before the worker exits (files: close)."""
        self.log.close()

    def _follow_model_store(self) -> None:
        """Every worker swaps in a newer packaged model (the package flow after a promotion) by itself.

        The swap is one assignment, so a request sees the old or the new model, never a mix. A model
        that fails to load is logged once per tag (with why, on /health and /metadata), the current one
        keeps serving, and the poll backs off (doubling, up to 10 minutes) until something changes.
        """
        delay, failed_tag = SETTINGS.reload_seconds, None
        while True:
            time.sleep(delay)
            tag = None
            try:
                model = bentoml.models.get(f"{SETTINGS.model_name}:latest")
                tag = str(model.tag)
                if tag in (self.current.tag, failed_tag):
                    delay = (
                        SETTINGS.reload_seconds if tag == self.current.tag else min(delay * 2, 600)
                    )
                    continue
                replaced = self.current
                previous = replaced.info["model_version"]
                self.current = LoadedModel(Path(model.path), tag)
                _serving(self.current, 1)
                _serving(replaced, 0)
                self.reload_error, failed_tag, delay = None, None, SETTINGS.reload_seconds
                log.info(
                    "now serving %s v%s (was v%s)",
                    tag,
                    self.current.info["model_version"],
                    previous,
                )
            except Exception as exc:  # keep serving the loaded model
                failed_tag = tag
                self.reload_error = f"{type(exc).__name__}: {str(exc)[:300]}"
                delay = min(delay * 2, 600)
                log.error(
                    "could not load the newest packaged model (%s); still serving %s; next try in %.0f s",
                    self.reload_error,
                    self.current.tag,
                    delay,
                )

    def _score(
        self,
        ids: list[Any],
        rows: list[list[Any]],
        features: list[dict[str, Any]],
        as_of: list[str | None],
        started: float,
        loaded: LoadedModel,
    ) -> list[dict[str, Any]]:
        """One model call for all rows; the prediction applies the model's stored decision threshold.

        ``features`` are the checked feature objects as received (or looked up), logged as they are;
        ``as_of`` is the time each row's features describe (None: the request time).
        """
        proba = loaded.scorer.proba(rows)
        latency = round((time.perf_counter() - started) * 1000, 3)
        now = datetime.now(UTC).isoformat()
        entity, version, threshold = (
            loaded.schema.entity,
            loaded.info["model_version"],
            loaded.schema.decision_threshold,
        )
        request_id = uuid.uuid4().hex  # one per HTTP request; "row" orders a batch's records
        answers, records = [], []
        for k, (entity_id, values, when, p) in enumerate(
            zip(ids, features, as_of, proba.tolist(), strict=True)
        ):
            prediction, probability = int(p >= threshold), round(p, 6)
            answers.append(
                {
                    entity: entity_id,
                    "prediction": prediction,
                    "probability": probability,
                    "model_version": version,
                    "latency_ms": latency,
                    "request_id": request_id,
                }
            )
            records.append(
                record(
                    entity,
                    entity_id,
                    request_id=request_id,
                    row=k,
                    ts=now,
                    as_of=when or now,
                    prediction=prediction,
                    probability=probability,
                    model_version=version,
                    latency_ms=latency,
                    features=values,
                )
            )
        self.log.write(records)
        positives = sum(a["prediction"] for a in answers)
        counted = metrics().predictions
        if positives:
            counted.labels(version, "1").inc(positives)
        if len(answers) > positives:
            counted.labels(version, "0").inc(len(answers) - positives)
        return answers

    # Every API takes the whole JSON body (a positional-only root input) and checks its keys itself, so an
    # unknown or misspelled key is refused by name instead of dropped. The APIs are async: checking and scoring
    # take well under a millisecond a row, and running them on the event loop saves a thread hop and GIL
    # hand-offs per request (measured: 1,000-row batches 53k -> 72k rows/s).
    @bentoml.api
    async def predict(self, body: dict[str, Any], /) -> dict[str, Any]:
        """One entity: ``{<entity>, features[, as_of]}`` (the seed article's contract, with the repo's entity name)."""
        started = time.perf_counter()
        loaded = self.current
        try:
            entity_id, values, as_of = check_row(loaded.schema, body, "")
        except RequestError as exc:
            return _refuse(exc, "/predict")
        return self._score([entity_id], [values], [body["features"]], [as_of], started, loaded)[0]

    @bentoml.api
    async def predict_batch(self, body: dict[str, Any], /) -> list[dict[str, Any]]:
        """Many entities in one call, answered in order: ``{"rows": [{<entity>, features[, as_of]}, ...]}``."""
        started = time.perf_counter()
        loaded = self.current
        ids, values, times = [], [], []
        try:
            rows = check_count(
                check_keys(body, ("rows",), (), "")["rows"], "rows", SETTINGS.max_batch
            )
            for i, row in enumerate(rows):
                entity_id, row_values, as_of = check_row(loaded.schema, row, f"rows[{i}]")
                ids.append(entity_id)
                values.append(row_values)
                times.append(as_of)
        except RequestError as exc:
            return _refuse(exc, "/predict_batch")
        return self._score(ids, values, [row["features"] for row in rows], times, started, loaded)

    @bentoml.api
    async def predict_by_id(self, body: dict[str, Any], /) -> list[dict[str, Any]]:
        """Entities by id, ``{"ids": [...]}``; their features come from the online snapshot."""
        started = time.perf_counter()
        loaded = self.current
        try:
            given = check_count(
                check_keys(body, ("ids",), (), "")["ids"], "ids", SETTINGS.max_batch
            )
            ids = [check_entity_id(loaded.schema, v, f"ids[{i}]") for i, v in enumerate(given)]
        except RequestError as exc:
            return _refuse(exc, "/predict_by_id")
        found, unknown = loaded.online.lookup(ids)
        if unknown:
            shown = ", ".join(shown_value(u) for u in unknown[:20])
            return _refuse(RequestError(f"unknown ids: [{shown}]", status=404), "/predict_by_id")
        features = [found[i] for i in ids]
        snapshot_time = [loaded.info["online_as_of"]] * len(
            ids
        )  # the time the snapshot's features describe
        return self._score(
            ids,
            [[f[n] for n in loaded.names] for f in features],
            features,
            snapshot_time,
            started,
            loaded,
        )

    def openapi_document(self) -> bytes:
        """The OpenAPI document of the model this worker serves (``bentos/openapi.py``), built once
        per loaded model: BentoML's own describes ``dict[str, Any]`` bodies and its boilerplate."""
        loaded = self.current
        if loaded.openapi is None:
            example = loaded.example
            entity_id, values, _ = check_row(loaded.schema, example, "")
            probability = float(loaded.scorer.proba([values])[0])
            answer = {
                loaded.schema.entity: entity_id,
                "prediction": int(probability >= loaded.schema.decision_threshold),
                "probability": round(probability, 6),
                "model_version": loaded.info["model_version"],
                "latency_ms": 0.5,
                "request_id": "5f0c1b2a9d8e4f7a8b6c3d2e1f0a9b8c",
            }
            readme = (
                ChurnService.bento.doc
                if ChurnService.bento is not None
                else (Path(__file__).parent / "README.md").read_text()
            )
            spec = openapi.document(
                ChurnService.openapi_spec.asdict(),
                title=f"{ChurnService.name} ({loaded.info['model_name']})",
                description=f"{readme.rstrip()}\n\n{openapi.model_summary(loaded.info, loaded.tag)}",
                info=loaded.info,
                example=example,
                answer=answer,
                health=self.health(),
                metadata=self.metadata(),
                docs={name: api.doc or "" for name, api in ChurnService.apis.items()},
                max_batch=SETTINGS.max_batch,
                max_body=SETTINGS.max_body_bytes,
                token=SETTINGS.api_token is not None,
            )
            loaded.openapi = json.dumps(spec).encode()
        return loaded.openapi

    def health(self) -> dict[str, Any]:
        loaded = self.current
        return {
            "status": "healthy",
            "model_loaded": loaded.scorer is not None,
            "model_version": loaded.info["model_version"],
            "reload_error": self.reload_error,
        }

    def metadata(self) -> dict[str, Any]:
        loaded = self.current
        keys = (
            "model_name",
            "model_version",
            "run_id",
            "trained_at",
            "feature_set_version",
            "online_as_of",
            "sql_hashes",
            "decision_threshold",
            "entity",
            "entity_dtype",
        )
        return {
            **{k: loaded.info[k] for k in keys},
            "features": loaded.schema.features,
            "bento_model": loaded.tag,
            "scoring": "compiled" if loaded.scorer.compiled is not None else "pipeline",
            "reload_error": self.reload_error,
        }


def _openapi_document() -> bytes:
    return bytes(bentoml.get_current_service().openapi_document())


ChurnService.add_asgi_middleware(
    Guard,
    token=SETTINGS.api_token,
    max_body=SETTINGS.max_body_bytes,
    max_batch=SETTINGS.max_batch,
    openapi=_openapi_document,
)
bound_bentoml_metrics()
