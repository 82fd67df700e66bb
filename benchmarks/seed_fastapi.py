"""The naive baseline for the serving benchmark: the seed article's FastAPI service, as it wrote it.

One pandas DataFrame per request, ``predict`` then ``predict_proba`` (two pipeline calls), no
validation beyond pydantic, no logging. It serves the same packaged model as the Bento (the skops
file in the Bento model directory named by ``BASELINE_MODEL_DIR``). Only the feature value type
is widened from ``float`` to admit the categorical features this model has. Run by
``benchmarks/serving.py`` with uvicorn (one worker, access log off, as the Bento's is in that run).
"""

from __future__ import annotations

import json
import os
import time
from contextlib import asynccontextmanager
from pathlib import Path

import pandas as pd
import skops.io
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel


class PredictionRequest(BaseModel):
    customer_id: str | int
    features: dict[str, float | str | None]


class PredictionResponse(BaseModel):
    customer_id: str | int
    prediction: int
    probability: float
    model_version: str
    latency_ms: float


model_store = {}


@asynccontextmanager
async def lifespan(app: FastAPI):
    root = Path(os.environ["BASELINE_MODEL_DIR"])
    info = json.loads((root / "schema.json").read_text())
    model_store["model"] = skops.io.load(root / "model.skops", trusted=info["trusted_types"])
    model_store["version"] = info["model_version"]
    yield
    model_store.clear()


app = FastAPI(title="Churn Prediction API", lifespan=lifespan)


@app.post("/predict", response_model=PredictionResponse)
async def predict(request: PredictionRequest):
    start_time = time.time()
    model = model_store.get("model")
    if not model:
        raise HTTPException(status_code=503, detail="Model not loaded")
    features_df = pd.DataFrame([request.features])
    prediction = int(model.predict(features_df)[0])
    probability = float(model.predict_proba(features_df)[0][1])
    latency_ms = (time.time() - start_time) * 1000
    return PredictionResponse(
        customer_id=request.customer_id,
        prediction=prediction,
        probability=probability,
        model_version=model_store["version"],
        latency_ms=round(latency_ms, 2),
    )


@app.post("/predict_batch")
async def predict_batch(rows: list[PredictionRequest]):
    """The same approach for many rows (the seed has no batch endpoint): one DataFrame, two model calls."""
    start_time = time.time()
    model = model_store["model"]
    features_df = pd.DataFrame([r.features for r in rows])
    predictions = model.predict(features_df)
    probabilities = model.predict_proba(features_df)[:, 1]
    latency_ms = round((time.time() - start_time) * 1000, 2)
    return [
        {
            "customer_id": r.customer_id,
            "prediction": int(p),
            "probability": float(q),
            "model_version": model_store["version"],
            "latency_ms": latency_ms,
        }
        for r, p, q in zip(rows, predictions, probabilities)
    ]


@app.get("/health")
async def health():
    return {"status": "healthy", "model_loaded": "model" in model_store}
