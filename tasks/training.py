"""Training-stage tasks: load the feature set, check and split it, fit, evaluate, log to MLflow, register."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from churn import training
from churn.expectations import TRAINING_SET as TRAINING_SET_SUITE
from churn.params import TrainParams
from churn.settings import Settings
from tasks import feature_sets, mlflow_store
from tasks.feature_engine import file_digest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class TrainingData:
    frame: pd.DataFrame
    manifest: dict
    path: Path
    schema: training.FeatureSchema

    @property
    def label(self) -> str:
        return self.manifest["label"]

    def xy(self, rows: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
        part = self.frame.iloc[rows]
        return part[self.schema.names], part[self.label].to_numpy().astype(int)


@dataclass
class FittedModel:
    model: object
    """The pipeline wrapped with its decision threshold (predict applies it; predict_proba is unchanged)."""
    threshold: float
    estimator_params: dict
    valid_auc_roc: float
    fit_seconds: float
    trials: list[dict] = field(default_factory=list)


@task(cache_policy=NO_CACHE)
def check_tracking(settings: Settings) -> None:
    """Fail before any work when the MLflow store is unreachable."""
    mlflow_store.connect(settings)


@task(cache_policy=NO_CACHE)
def load_training_data(settings: Settings) -> TrainingData:
    """The latest published training set, its manifest, and its checked feature schema."""
    path = feature_sets.latest_feature_set(settings.features_dir)
    manifest = feature_sets.read_manifest(path)
    frame = pd.read_parquet(path / feature_sets.TRAINING_SET)
    schema = training.feature_schema(manifest["features"])
    training.check_training_frame(frame, manifest["label"], schema, str(path / feature_sets.TRAINING_SET))
    get_run_logger().info("training set %s: %d rows, %d features", manifest["version"], len(frame), len(schema.names))
    return TrainingData(frame, manifest, path, schema)


@task(cache_policy=NO_CACHE)
def validate_training_data(settings: Settings, data: TrainingData) -> None:
    """The training set against its Great Expectations suite: a failure stops the flow before training.

    Skipped when the features flow already validated these exact bytes with this exact suite.
    """
    from tasks.data_validation import enforce, load_suites, validation_stamp
    from tasks.feature_engine import load_feature_repo

    suites, _ = load_suites(load_feature_repo(settings.feature_repo), settings.expectations_dir)
    suite = suites[TRAINING_SET_SUITE]
    recorded = data.manifest.get("validation", {}).get("outputs", {}).get(TRAINING_SET_SUITE, {})
    if recorded.get("success") and recorded.get("stamp") == validation_stamp(suite, data.path / feature_sets.TRAINING_SET):
        get_run_logger().info("training set already passed suite %r when it was published: not re-validated", suite["name"])
        return
    enforce(settings, [(data.frame, suite, {})])


@task(cache_policy=NO_CACHE)
def split_training_data(data: TrainingData, params: TrainParams) -> training.Split:
    """Time split with purge gaps (or a stratified split for a single snapshot); each part has both classes."""
    split = training.split_rows(data.frame, data.label, params, data.manifest["horizon_days"])
    for part in ("train", "valid", "test"):
        rows = getattr(split, part)
        y = data.frame[data.label].to_numpy()[rows]
        if len(np.unique(y)) < 2:
            raise training.TrainingDataError(
                f"{data.path}: the {part} part ({len(rows)} rows, {split.details}) has a single class; "
                "more history or other test_dates / valid_dates are needed"
            )
    get_run_logger().info(
        "%s split: train %d, valid %d, test %d rows %s",
        split.strategy, len(split.train), len(split.valid), len(split.test), split.details,
    )
    return split


def _fit_one(data: TrainingData, split: training.Split, params: TrainParams, estimator) -> tuple[object, np.ndarray, float]:
    """The fitted pipeline, its validation probabilities and the fit time."""
    x_train, y_train = data.xy(split.train)
    x_valid, _ = data.xy(split.valid)
    pipeline = training.build_pipeline(data.schema, estimator, params.class_weight, params.seed)
    started = time.perf_counter()
    pipeline.fit(x_train, y_train, **training.fit_kwargs(estimator, params.class_weight, y_train))
    seconds = time.perf_counter() - started
    return pipeline, pipeline.predict_proba(x_valid)[:, 1], seconds


@task(cache_policy=NO_CACHE)
def fit_model(data: TrainingData, split: training.Split, params: TrainParams) -> FittedModel:
    """Fit the estimator (or the best of a small search, by validation AUC) and fix its threshold."""
    from sklearn.frozen import FrozenEstimator
    from sklearn.model_selection import FixedThresholdClassifier

    from sklearn.metrics import roc_auc_score

    logger = get_run_logger()
    x_valid, y_valid = data.xy(split.valid)
    candidates = training.search_space(params.estimator, params.search_trials, params.seed) if params.search else []
    trials = []
    best = (None, -1.0, 0.0, params.estimator, None)
    for i, estimator in enumerate([params.estimator, *candidates]):
        pipeline, valid_proba, seconds = _fit_one(data, split, params, estimator)
        valid_auc = float(roc_auc_score(y_valid, valid_proba))
        trials.append({"trial": i, "params": estimator.model_dump(), "valid_auc_roc": valid_auc, "fit_seconds": seconds})
        logger.info("trial %d: valid AUC %.4f (%s)", i, valid_auc, estimator.model_dump())
        if valid_auc > best[1]:
            best = (pipeline, valid_auc, seconds, estimator, valid_proba)
    pipeline, valid_auc, seconds, estimator, valid_proba = best
    threshold = training.choose_threshold(y_valid, valid_proba)  # the same probabilities the AUC used
    model = FixedThresholdClassifier(FrozenEstimator(pipeline), threshold=threshold, response_method="predict_proba")
    model.fit(x_valid, y_valid)  # the frozen pipeline is not refitted: this only records the threshold
    return FittedModel(model, threshold, estimator.model_dump(), valid_auc, seconds, trials if params.search else [])


@task(cache_policy=NO_CACHE)
def evaluate_model(data: TrainingData, split: training.Split, fitted: FittedModel) -> dict[str, float]:
    """Test-set metrics at the stored threshold."""
    x_test, y_test = data.xy(split.test)
    metrics = training.classification_metrics(y_test, fitted.model.predict_proba(x_test)[:, 1], fitted.threshold)
    get_run_logger().info("test metrics: %s", {k: round(v, 4) for k, v in metrics.items()})
    return metrics


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except OSError:
        return "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    return (out.stdout.strip() or "unknown") + ("-dirty" if dirty.stdout.strip() else "")


def _stratified_sample(y: np.ndarray, size: int, seed: int) -> np.ndarray:
    if len(y) <= size:
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    picked, _ = train_test_split(np.arange(len(y)), train_size=size, stratify=y, random_state=seed)
    return picked


def _write_evaluation(out: Path, data: TrainingData, split: training.Split, fitted: FittedModel, seed: int) -> None:
    """Feature importance (CSV + chart) and ROC, precision-recall, calibration and confusion-matrix plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import CalibrationDisplay
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

    x_test, y_test = data.xy(split.test)
    proba = fitted.model.predict_proba(x_test)[:, 1]
    pipeline = fitted.model.estimator.estimator  # FixedThreshold -> Frozen -> Pipeline
    estimator = pipeline.named_steps["model"]
    if hasattr(estimator, "feature_importances_"):
        encoded = pipeline.named_steps["preprocess"].get_feature_names_out()
        raw = pd.Series(estimator.feature_importances_, index=encoded)
        # fold one-hot and missing-indicator columns back onto the feature they came from
        owner = {name: next((f for f in sorted(data.schema.names, key=len, reverse=True)
                             if name == f or name.startswith(f + "_") or name == f"missingindicator_{f}"), name)
                 for name in encoded}
        importance = raw.groupby(owner).sum().reindex(data.schema.names, fill_value=0.0)
        method = "impurity"
    else:
        # a stratified sample keeps this to about a second while ranking features stably enough to read
        sample = _stratified_sample(y_test, 3000, seed)
        result = permutation_importance(pipeline, x_test.iloc[sample], y_test[sample], scoring="roc_auc",
                                        n_repeats=2, random_state=seed, n_jobs=1)
        importance = pd.Series(result.importances_mean, index=data.schema.names)
        method = "permutation (drop in test AUC)"
    table = importance.sort_values(ascending=False).rename("importance").rename_axis("feature").reset_index()
    table["method"] = method
    table.to_csv(out / "feature_importance.csv", index=False)

    fig, ax = plt.subplots(figsize=(7, max(3, 0.3 * len(table))))
    ax.barh(table["feature"][::-1], table["importance"][::-1])
    ax.set_title(f"Feature importance ({method})")
    fig.tight_layout()
    fig.savefig(out / "feature_importance.png", dpi=90)
    plt.close(fig)
    # one 2x2 figure: a single render is most of the cost of a plot here
    fig, axes = plt.subplots(2, 2, figsize=(10, 10))
    RocCurveDisplay.from_predictions(y_test, proba, ax=axes[0, 0])
    PrecisionRecallDisplay.from_predictions(y_test, proba, ax=axes[0, 1])
    CalibrationDisplay.from_predictions(y_test, proba, n_bins=10, strategy="quantile", ax=axes[1, 0])
    ConfusionMatrixDisplay.from_predictions(y_test, (proba >= fitted.threshold).astype(int), ax=axes[1, 1], colorbar=False)
    for ax, title in zip(axes.flat, ("ROC curve", "Precision-recall curve", "Calibration curve",
                                     f"Confusion matrix (threshold {fitted.threshold:.3f})")):
        ax.set_title(title)
    fig.suptitle(f"Test set: {len(y_test)} rows, {int(y_test.sum())} positive")
    fig.tight_layout()
    fig.savefig(out / "evaluation_curves.png", dpi=90)
    plt.close(fig)


def _dataset(data: TrainingData, rows: np.ndarray, name: str, source: Path, file_sha: str):
    """A dataset record with an exact digest (file hash + chosen rows) and a schema from a sample.

    MLflow's from_pandas infers the schema over every row (seconds at our sizes); the digest
    here identifies the exact rows at no such cost.
    """
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource
    from mlflow.models import infer_signature

    digest = hashlib.sha256(file_sha.encode() + np.asarray(rows, dtype=np.int64).tobytes()).hexdigest()[:16]
    sample = data.frame.iloc[rows[:100]][[*data.schema.names, data.label]]
    return MetaDataset(LocalArtifactDatasetSource(str(source)), name=name, digest=digest,
                       schema=infer_signature(sample).inputs)


@task(cache_policy=NO_CACHE)
def log_training_run(
    settings: Settings, params: TrainParams, data: TrainingData, split: training.Split,
    fitted: FittedModel, metrics: dict[str, float],
) -> dict:
    """One MLflow run: params, metrics, datasets, evaluation plots, the manifest, tags and the model."""
    import mlflow
    import sklearn
    import skops
    from mlflow.models import infer_signature

    warnings.filterwarnings("ignore", message=".*Integer columns in Python cannot represent missing values.*")
    client = mlflow_store.connect(settings)
    experiment = mlflow_store.experiment_id(settings, client, params.experiment)
    y = data.frame[data.label]
    training_file = data.path / feature_sets.TRAINING_SET
    sources = json.dumps(data.manifest["sources"], sort_keys=True)
    with mlflow.start_run(experiment_id=experiment, run_name=f"{fitted.estimator_params['kind']}-{data.manifest['version']}") as run:
        mlflow.log_params({
            **{f"estimator.{k}": v for k, v in fitted.estimator_params.items()},
            "class_weight": params.class_weight, "seed": params.seed, "search": params.search,
            "split_strategy": split.strategy, **{f"split.{k}": v for k, v in split.details.items()},
            "train_size": len(split.train), "valid_size": len(split.valid), "test_size": len(split.test),
            "feature_count": len(data.schema.names), "positive_rate": round(float(y.mean()), 6),
            "as_of_first": str(data.frame["as_of"].min()), "as_of_last": str(data.frame["as_of"].max()),
            "decision_threshold": round(fitted.threshold, 6), "feature_set_version": data.manifest["version"],
        })
        mlflow.log_metrics({**metrics, "valid_auc_roc": fitted.valid_auc_roc, "fit_seconds": fitted.fit_seconds})
        file_sha = file_digest(str(training_file))
        for part, context in (("train", "training"), ("test", "testing")):
            mlflow.log_input(_dataset(data, getattr(split, part), part, training_file, file_sha), context=context)
        mlflow.set_tags({
            "git_commit": git_commit(),
            "feature_set.version": data.manifest["version"],
            "feature_set.path": str(data.path),
            "feature_set.training_sha256": file_sha,
            "feature_set.sources_sha256": hashlib.sha256(sources.encode()).hexdigest(),
            **{f"sql_hash.{view}": h for view, h in data.manifest["sql_hashes"].items()},
        })
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            _write_evaluation(out, data, split, fitted, params.seed)
            (out / "feature_set_manifest.json").write_text(json.dumps(data.manifest, indent=2, default=str))
            mlflow.log_artifacts(tmp, artifact_path="evaluation")
        with tempfile.TemporaryDirectory() as tmp:
            _reference_sample(data, split, fitted, params.seed).to_parquet(Path(tmp) / REFERENCE_FILE, index=False)
            mlflow.log_artifact(str(Path(tmp) / REFERENCE_FILE), artifact_path="monitoring")
        x_test, _ = data.xy(split.test)
        example = x_test.head(200)
        info = mlflow.sklearn.log_model(
            fitted.model,
            name="model",
            signature=infer_signature(example, fitted.model.predict(example)),
            input_example=example.head(3),
            serialization_format="skops",
            skops_trusted_types=mlflow_store.SKOPS_TRUSTED_TYPES,
            pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"skops=={skops.__version__}",
                              f"pandas=={pd.__version__}", f"numpy=={np.__version__}"],
            metadata={"decision_threshold": fitted.threshold, "feature_names": data.schema.names,
                      "categorical_features": data.schema.categorical, "feature_set_version": data.manifest["version"]},
        )
        for trial in fitted.trials:
            with mlflow.start_run(experiment_id=experiment, run_name=f"trial-{trial['trial']}", nested=True):
                mlflow.log_params({f"estimator.{k}": v for k, v in trial["params"].items()})
                mlflow.log_metrics({"valid_auc_roc": trial["valid_auc_roc"], "fit_seconds": trial["fit_seconds"]})
    get_run_logger().info("MLflow run %s logged (model %s)", run.info.run_id, info.model_uri)
    return {"run_id": run.info.run_id, "experiment_id": experiment, "model_uri": info.model_uri}


REFERENCE_FILE = "reference.parquet"
REFERENCE_ROWS = 20_000


def _reference_sample(data: TrainingData, split: training.Split, fitted: FittedModel, seed: int) -> pd.DataFrame:
    """What monitoring compares live traffic with: held-out rows (the newest, closest to serving)
    with their label and the model's out-of-sample probability, at most REFERENCE_ROWS of them."""
    test = data.frame.iloc[split.test]
    sample = test.sample(n=min(REFERENCE_ROWS, len(test)), random_state=seed)
    out = sample[[*data.schema.names, data.label]].reset_index(drop=True)
    out["probability"] = fitted.model.predict_proba(sample[data.schema.names])[:, 1]
    return out


@task(cache_policy=NO_CACHE)
def register_challenger(settings: Settings, params: TrainParams, run: dict, metrics: dict, data: TrainingData) -> str:
    """Register the run's model and point the ``challenger`` alias at the new version."""
    import mlflow

    client = mlflow_store.connect(settings)
    version = mlflow.register_model(run["model_uri"], params.model_name, tags={
        **{f"metric.{k}": f"{v:.6f}" for k, v in metrics.items()},
        "run_id": run["run_id"], "feature_set.version": data.manifest["version"],
    }).version
    client.set_registered_model_alias(params.model_name, "challenger", version)
    get_run_logger().info("registered %s version %s as @challenger", params.model_name, version)
    return str(version)


@task(cache_policy=NO_CACHE)
def feature_set_missing(settings: Settings) -> bool:
    """True when no feature set has been published yet (the flow then builds one first)."""
    try:
        feature_sets.latest_feature_set(settings.features_dir)
    except feature_sets.NoFeatureSetError:
        return True
    return False


def mlflow_ui_url(run: dict, port: int = 5000) -> str:
    return f"http://127.0.0.1:{port}/#/experiments/{run['experiment_id']}/runs/{run['run_id']}"


@task(cache_policy=NO_CACHE)
def publish_training_summary(
    settings: Settings, params: TrainParams, run: dict, version: str, metrics: dict, fitted: FittedModel,
    report, promotion: dict,
) -> dict:
    """The run's metrics as a Prefect table artifact with a link to the MLflow run."""
    from prefect.artifacts import create_link_artifact, create_table_artifact

    create_table_artifact(
        key="training-metrics",
        table=[{"metric": k, "value": round(v, 4)} for k, v in
               {**metrics, "valid_auc_roc": fitted.valid_auc_roc, "decision_threshold": fitted.threshold}.items()],
        description=f"test metrics of {params.model_name} v{version} (@challenger), run {run['run_id']}",
    )
    create_link_artifact(
        key="mlflow-run", link=mlflow_ui_url(run), link_text=f"MLflow run {run['run_id']}",
        description=f"open with `make mlflow-ui` (store: {settings.tracking_uri})",
    )
    return {**run, "model_name": params.model_name, "version": version, "metrics": metrics,
            "threshold": fitted.threshold, "estimator": fitted.estimator_params,
            "decision": report.decision, "report": report.to_text(), **promotion}
