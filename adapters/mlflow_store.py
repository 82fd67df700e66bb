"""MLflow: connect, experiments, the training run (params, metrics, datasets, plots, model), the
registry's model versions, gate reports, reference samples and monitoring windows."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adapters import feature_sets
from adapters.evaluation import write_evaluation
from adapters.feature_engine import load_feature_repo
from churn.contracts import (
    FeatureKind,
    FittedModel,
    Reference,
    TrainingData,
    TrainingRun,
    WindowMeasurement,
)
from churn.gates import GateReport
from churn.params import TrainParams
from churn.settings import Settings
from churn.training import Split, reference_sample

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_FILE = "reference.parquet"
UI_PORT = 5000

# skops loads only types listed here (never arbitrary pickled code). These are what our pipelines
# contain beyond skops' defaults: update the list when adding an estimator (a unit test checks it).
SKOPS_TRUSTED_TYPES = [
    "numpy.dtype",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.ensemble._gb.GradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.dummy.DummyRegressor",
    "sklearn.frozen._frozen.FrozenEstimator",
    "sklearn.impute._base.MissingIndicator",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.model_selection._classification_threshold.FixedThresholdClassifier",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._tree.Tree",
]


class TrackingUnavailableError(ConnectionError):
    """The MLflow tracking store cannot be reached."""


def connect(settings: Settings) -> Any:
    """Point MLflow at the configured store and check it answers; returns an MlflowClient."""
    # fail fast instead of MLflow's minutes of retries against an unreachable server
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    import mlflow
    from mlflow import MlflowClient

    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as exc:  # every transport and store error means the same to the user
        raise TrackingUnavailableError(
            f"cannot reach the MLflow tracking store at {uri} ({type(exc).__name__}: {str(exc)[:300]}); "
            "start it with `make up` or set CHURN_TRACKING_URI"
        ) from exc
    return client


def experiment_id(settings: Settings, client: Any, name: str) -> str:
    """Get or create the experiment; with the embedded SQLite store, artifacts go under CHURN_HOME."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if settings.tracking_uri.startswith("sqlite:"):
        location = (settings.mlartifacts_dir / name).resolve().as_uri()
    return str(client.create_experiment(name, artifact_location=location))


def run_url(run: TrainingRun, port: int = UI_PORT) -> str:
    """The run's page in the MLflow UI (``make mlflow-ui``)."""
    return f"http://127.0.0.1:{port}/#/experiments/{run.experiment_id}/runs/{run.run_id}"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
    except OSError:
        return "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=10
    )
    return (out.stdout.strip() or "unknown") + ("-dirty" if dirty.stdout.strip() else "")


def _dataset(data: TrainingData, rows: np.ndarray, name: str, source: Path, file_sha: str) -> Any:
    """A dataset record with an exact digest (file hash + chosen rows) and a schema from a sample.

    MLflow's from_pandas infers the schema over every row (seconds at our sizes); the digest
    here identifies the exact rows at no such cost.
    """
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource
    from mlflow.models import infer_signature

    digest = hashlib.sha256(
        file_sha.encode() + np.asarray(rows, dtype=np.int64).tobytes()
    ).hexdigest()[:16]
    sample = data.frame.iloc[rows[:100]][[*data.schema.names, data.label]]
    return MetaDataset(
        LocalArtifactDatasetSource(str(source)),
        name=name,
        digest=digest,
        schema=infer_signature(sample).inputs,
    )


def log_training_run(
    settings: Settings,
    params: TrainParams,
    data: TrainingData,
    split: Split,
    fitted: FittedModel,
    metrics: dict[str, float],
) -> TrainingRun:
    """One MLflow run: params, metrics, datasets, evaluation plots, the manifest, tags, the reference
    sample for monitoring, and the model (skops, trusted types only, signature, input example)."""
    import mlflow
    import sklearn
    import skops
    from mlflow.models import infer_signature

    warnings.filterwarnings(
        "ignore", message=".*Integer columns in Python cannot represent missing values.*"
    )
    client = connect(settings)
    experiment = experiment_id(settings, client, params.experiment)
    manifest = data.manifest
    y = data.frame[data.label]
    training_file = data.feature_set.path / feature_sets.TRAINING_SET
    sources = json.dumps({k: v.model_dump() for k, v in manifest.sources.items()}, sort_keys=True)
    run_name = f"{fitted.estimator_params['kind']}-{manifest.version}"
    with mlflow.start_run(experiment_id=experiment, run_name=run_name) as run:
        mlflow.log_params(
            {
                **{f"estimator.{k}": v for k, v in fitted.estimator_params.items()},
                "class_weight": params.class_weight,
                "seed": params.seed,
                "search": params.search,
                "split_strategy": split.strategy,
                **{f"split.{k}": v for k, v in split.details.items()},
                "train_size": len(split.train),
                "valid_size": len(split.valid),
                "test_size": len(split.test),
                "feature_count": len(data.schema.names),
                "positive_rate": round(float(y.mean()), 6),
                "first_as_of": str(data.frame["as_of"].min()),
                "last_as_of": str(data.frame["as_of"].max()),
                "decision_threshold": round(fitted.decision_threshold, 6),
                "feature_set_version": manifest.version,
            }
        )
        mlflow.log_metrics(
            {**metrics, "valid_auc_roc": fitted.valid_auc_roc, "fit_seconds": fitted.fit_seconds}
        )
        file_sha = feature_sets.table_digest(training_file)
        for part, context in (("train", "training"), ("test", "testing")):
            mlflow.log_input(
                _dataset(data, getattr(split, part), part, training_file, file_sha), context=context
            )
        mlflow.set_tags(
            {
                "git_commit": git_commit(),
                "feature_set.version": manifest.version,
                "feature_set.path": str(data.feature_set.path),
                "feature_set.training_sha256": file_sha,
                "feature_set.sources_sha256": hashlib.sha256(sources.encode()).hexdigest(),
                **{f"sql_hash.{view}": h for view, h in manifest.sql_hashes.items()},
            }
        )
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            write_evaluation(out, data, split, fitted, params.seed)
            (out / "feature_set_manifest.json").write_text(manifest.model_dump_json(indent=2))
            mlflow.log_artifacts(tmp, artifact_path="evaluation")
        with tempfile.TemporaryDirectory() as tmp:
            reference_sample(data, split, fitted, params.seed).to_parquet(
                Path(tmp) / REFERENCE_FILE, index=False
            )
            mlflow.log_artifact(str(Path(tmp) / REFERENCE_FILE), artifact_path="monitoring")
        x_test, _ = data.xy(split.test)
        example = x_test.head(200)
        info = mlflow.sklearn.log_model(
            fitted.model,
            name="model",
            signature=infer_signature(example, fitted.model.predict(example)),
            input_example=example.head(3),
            serialization_format="skops",
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
            pip_requirements=[
                f"scikit-learn=={sklearn.__version__}",
                f"skops=={skops.__version__}",
                f"pandas=={pd.__version__}",
                f"numpy=={np.__version__}",
            ],
            metadata={
                "decision_threshold": fitted.decision_threshold,
                "feature_names": data.schema.names,
                "categorical_features": data.schema.categorical,
                "boolean_features": data.schema.boolean,
                "feature_set_version": manifest.version,
                "entity": manifest.entity,
                "entity_dtype": manifest.entity_dtype,
            },
        )
        for trial in fitted.trials:
            with mlflow.start_run(
                experiment_id=experiment, run_name=f"trial-{trial.trial}", nested=True
            ):
                mlflow.log_params({f"estimator.{k}": v for k, v in trial.params.items()})
                mlflow.log_metrics(
                    {"valid_auc_roc": trial.valid_auc_roc, "fit_seconds": trial.fit_seconds}
                )
    return TrainingRun(run.info.run_id, experiment, info.model_uri)


def register_challenger(
    settings: Settings,
    model_name: str,
    run: TrainingRun,
    metrics: dict[str, float],
    feature_set_version: str,
) -> str:
    """Register the run's model and point the ``challenger`` alias at the new version."""
    import mlflow

    client = connect(settings)
    version = mlflow.register_model(
        run.model_uri,
        model_name,
        tags={
            **{f"metric.{k}": f"{v:.6f}" for k, v in metrics.items()},
            "run_id": run.run_id,
            "feature_set.version": feature_set_version,
        },
    ).version
    client.set_registered_model_alias(model_name, "challenger", version)
    return str(version)


def load_model(settings: Settings, model_name: str, version: str) -> tuple[Any, Any]:
    """The sklearn model of one registered version, and its MLflow model info (metadata, signature)."""
    import mlflow

    connect(settings)
    uri = f"models:/{model_name}/{version}"
    return mlflow.sklearn.load_model(uri), mlflow.models.get_model_info(uri)


def model_info(settings: Settings, model_name: str, version: str) -> Any:
    import mlflow

    connect(settings)
    return mlflow.models.get_model_info(f"models:/{model_name}/{version}")


def log_gate_report(
    settings: Settings, run: TrainingRun, model_name: str, report: GateReport
) -> None:
    """The report as text and JSON on the challenger's run, its decision as run and version tags."""
    client = connect(settings)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "validation_report.txt").write_text(report.to_text() + "\n")
        (Path(tmp) / "validation_report.json").write_text(json.dumps(report.to_dict(), indent=2))
        client.log_artifacts(run.run_id, tmp, artifact_path="gates")
    client.log_metric(run.run_id, "gates_failed", report.counts["FAIL"])
    client.set_tag(run.run_id, "gates.decision", report.decision)
    client.set_model_version_tag(
        model_name, report.challenger_version, "gates.decision", report.decision
    )


def download_reference(settings: Settings, run_id: str, target: Path) -> None:
    """The run's monitoring reference sample, copied to ``target`` (written whole, then renamed)."""
    import shutil

    import mlflow

    local = mlflow.artifacts.download_artifacts(
        run_id=run_id,
        artifact_path=f"monitoring/{REFERENCE_FILE}",
        tracking_uri=settings.tracking_uri,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    shutil.copyfile(local, tmp)
    tmp.rename(target)


class NoReferenceError(LookupError):
    """There is no champion, or it has no reference sample to monitor against."""


def load_reference(settings: Settings, model_name: str) -> Reference:
    """The champion's reference sample (logged with its training run), cached per version."""
    from adapters import registry

    client = connect(settings)
    version = registry.alias_version(client, model_name, registry.CHAMPION)
    if version is None:
        raise NoReferenceError(
            f"{model_name} has no @champion: nothing to monitor against; run the train flow first"
        )
    details = client.get_model_version(model_name, version)
    run = client.get_run(details.run_id)
    metadata = model_info(settings, model_name, version).metadata
    categorical = set(metadata.get("categorical_features") or [])
    cache = settings.reference_cache_dir / f"v{version}.parquet"
    if not cache.is_file():
        try:
            download_reference(settings, details.run_id, cache)
        except Exception as exc:  # MLflow raises several types for a missing artifact
            raise NoReferenceError(
                f"champion v{version} (run {details.run_id}) has no monitoring/{REFERENCE_FILE}: "
                f"it predates reference samples; retrain to monitor it ({exc})"
            ) from exc
    boolean = set(metadata.get("boolean_features") or [])
    features: dict[str, FeatureKind] = {
        n: "str" if n in categorical else "bool" if n in boolean else "num"
        for n in metadata["feature_names"]
    }
    if "entity" in metadata:
        entity, entity_dtype = metadata["entity"], metadata["entity_dtype"]
    else:  # a model logged before the entity was recorded with it: the repo's entity
        config = load_feature_repo(settings.feature_repo).config
        entity, entity_dtype = config.entity, config.entity_dtype
    frame = pd.read_parquet(cache)
    threshold = metadata.get("decision_threshold")
    predicted = None if threshold is None else float((frame["probability"] >= threshold).mean())
    return Reference(
        str(version),
        run.data.metrics.get("auc_roc"),
        entity,
        entity_dtype,
        features,
        frame,
        predicted,
    )


def log_monitoring_window(
    settings: Settings,
    reference: Reference,
    window: WindowMeasurement,
    report: Path | None,
    start: datetime,
    end: datetime,
) -> None:
    """One run per window in the ``churn-monitoring`` experiment, named by the window's bounds."""
    import mlflow

    client = connect(settings)
    experiment = experiment_id(settings, client, "churn-monitoring")
    m = window.metrics
    with mlflow.start_run(
        experiment_id=experiment, run_name=f"window-{start:%Y%m%dT%H%M}-{end:%Y%m%dT%H%M}"
    ):
        mlflow.set_tags(
            {
                "champion_version": reference.model_version,
                "window_start": str(start),
                "window_end": str(end),
            }
        )
        values: dict[str, float] = {
            "count": m.count,
            "positive_rate": m.positive_rate,
            "latency_p99_ms": m.latency_p99_ms,
            "malformed_lines": window.read.malformed,
            "labelled": window.labels.labelled,
            **{f"psi.{k}": v for k, v in window.drift.psi.items()},
            **window.labels.metrics,
        }
        if window.drift.prediction_psi is not None:
            values["prediction_psi"] = window.drift.prediction_psi
        mlflow.log_metrics({k: float(v) for k, v in values.items()})
        if report is not None:
            mlflow.log_artifact(str(report), artifact_path="evidently")
