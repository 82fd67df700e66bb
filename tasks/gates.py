"""Gate tasks: measure the challenger (and the champion on the same holdout), decide, report, promote."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from churn import gates, training
from churn.params import GateParams, TrainParams
from churn.settings import Settings
from tasks import feature_sets, mlflow_store, registry
from tasks.training import FittedModel, TrainingData


@task(cache_policy=NO_CACHE)
def score_champion(settings: Settings, params: TrainParams, data: TrainingData, split: training.Split) -> dict:
    """The current champion's metrics on the challenger's test set, or why it cannot be scored."""
    import mlflow

    client = mlflow_store.connect(settings)
    version = registry.alias_version(client, params.model_name, registry.CHAMPION)
    if version is None:
        return {"version": None, "metrics": None, "note": None}
    uri = f"models:/{params.model_name}/{version}"  # pinned: the alias may move while we score
    info = mlflow.models.get_model_info(uri)
    needed = (info.metadata or {}).get("feature_names") or [c.name for c in info.signature.inputs.inputs]
    missing = [c for c in needed if c not in data.frame.columns]
    if missing:
        return {"version": version, "metrics": None,
                "note": f"champion v{version} needs features missing from the current holdout: {missing}"}
    model = mlflow.sklearn.load_model(uri)
    test = data.frame.iloc[split.test]
    proba = model.predict_proba(test[needed])[:, 1]
    metrics = training.classification_metrics(test[data.label].to_numpy().astype(int), proba, float(model.threshold))
    get_run_logger().info("champion v%s on the current holdout: %s", version, {k: round(v, 4) for k, v in metrics.items()})
    return {"version": version, "metrics": metrics, "note": None}


def _percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 99))


@task(cache_policy=NO_CACHE)
def measure_latency(data: TrainingData, split: training.Split, fitted: FittedModel, gate: GateParams) -> dict[str, float]:
    """p50/p99 milliseconds of the service's scoring path (churn.scoring, verified against the
    pipeline) for one row and for 1,000 rows."""
    from churn.scoring import compile_scorer, plain_rows

    x_test, _ = data.xy(split.test)
    sample = x_test.sample(n=min(1000, len(x_test)), random_state=0, replace=len(x_test) < 1000)
    rows = plain_rows(sample)
    dtypes = {name: "str" if name in data.schema.categorical else "float64" for name in data.schema.names}
    scorer = compile_scorer(fitted.model.estimator.estimator, data.schema.names, dtypes).verified(rows[:256])
    out = {}
    for name, calls, pick in (
        ("single_row", gate.latency.calls, lambda i: rows[i % len(rows): i % len(rows) + 1]),
        ("batch_1000", max(20, gate.latency.calls // 10), lambda i: rows),
    ):
        scorer.proba(pick(0))  # warm-up
        samples = []
        for i in range(calls):
            batch = pick(i)
            started = time.perf_counter()
            scorer.proba(batch)
            samples.append((time.perf_counter() - started) * 1000)
        out[f"{name}_p50"], out[f"{name}_p99"] = _percentiles(samples)
    return out


@task(cache_policy=NO_CACHE)
def measure_drift(settings: Settings, data: TrainingData, split: training.Split, gate: GateParams) -> dict[str, float]:
    """PSI per feature: the training rows (reference) vs the online snapshot serving will use."""
    online = pd.read_parquet(data.path / feature_sets.ONLINE_SNAPSHOT, columns=data.schema.names)
    reference = data.frame.iloc[split.train]
    return {name: gates.population_stability_index(reference[name], online[name], bins=gate.drift.bins)
            for name in data.schema.names}


@task(cache_policy=NO_CACHE)
def measure_slices(data: TrainingData, split: training.Split, fitted: FittedModel, gate: GateParams) -> dict[str, dict[str, float]]:
    """Test AUC per level of each slice column (default: every categorical feature)."""
    test = data.frame.iloc[split.test].copy()
    test["_proba"] = fitted.model.predict_proba(test[data.schema.names])[:, 1]
    columns = gate.slices.columns if gate.slices.columns is not None else data.schema.categorical
    unknown = [c for c in columns if c not in test.columns]
    if unknown:
        raise ValueError(f"slice columns {unknown} are not in the training set (gates.slices.columns)")
    return {c: gates.slice_metrics(test, c, data.label, "_proba", gate.slices.min_rows) for c in columns}


@task(cache_policy=NO_CACHE)
def decide(params: TrainParams, version: str, metrics: dict, champion: dict, latency: dict, psi: dict, slices: dict) -> gates.GateReport:
    """Every gate's checks and the overall APPROVED / REJECTED."""
    report = gates.evaluate_gates(
        params.gates, model_name=params.model_name, challenger_version=version, challenger_metrics=metrics,
        champion_version=champion["version"], champion_metrics=champion["metrics"], champion_note=champion["note"],
        latency_ms=latency, psi=psi, slices=slices,
    )
    get_run_logger().info("validation report\n%s", report.to_text())
    return report


@task(cache_policy=NO_CACHE)
def publish_gate_report(settings: Settings, params: TrainParams, run: dict, report: gates.GateReport) -> None:
    """The report as text and JSON on the challenger's MLflow run, a Prefect artifact and version tags."""
    client = mlflow_store.connect(settings)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "validation_report.txt").write_text(report.to_text() + "\n")
        (Path(tmp) / "validation_report.json").write_text(json.dumps(report.to_dict(), indent=2))
        client.log_artifacts(run["run_id"], tmp, artifact_path="gates")
    client.log_metric(run["run_id"], "gates_failed", report.counts["FAIL"])
    client.set_tag(run["run_id"], "gates.decision", report.decision)
    client.set_model_version_tag(params.model_name, report.challenger_version, "gates.decision", report.decision)
    create_markdown_artifact(key="validation-report", markdown=report.to_markdown() + "\n```\n" + report.to_text() + "\n```\n",
                             description=f"{report.decision}: {params.model_name} v{report.challenger_version}")


@task(cache_policy=NO_CACHE)
def promote_if_approved(settings: Settings, params: TrainParams, report: gates.GateReport) -> dict:
    """Move @champion to the challenger only when APPROVED (and the champion is still the one compared)."""
    logger = get_run_logger()
    if not report.approved:
        logger.warning("%s v%s REJECTED (%d failed checks): champion unchanged",
                       params.model_name, report.challenger_version, report.counts["FAIL"])
        return {"promoted": False, "champion": report.champion_version}
    if not params.promote:
        logger.info("approved, but promote=false: champion unchanged")
        return {"promoted": False, "champion": report.champion_version}
    client = mlflow_store.connect(settings)
    event = registry.promote(settings, client, params.model_name, report.challenger_version,
                             report.champion_version, reason=f"gates APPROVED ({report.counts})")
    logger.info("%s v%s is now @champion (previous: %s)", params.model_name, event["champion"], event["previous"])
    return {"promoted": True, "champion": event["champion"], "previous": event["previous"]}
