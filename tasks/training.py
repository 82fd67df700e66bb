"""Training-stage tasks: load the feature set, check and split it, fit, evaluate, log to MLflow, register."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from adapters import feature_engine, feature_sets, mlflow_store, validation
from churn import training
from churn.contracts import FittedModel, Promotion, TrainingData, TrainingRun, TrainResult
from churn.environments import environment_gates
from churn.expectations import TRAINING_SET
from churn.gates import GateReport
from churn.params import TrainParams, merged, with_repo_defaults
from churn.settings import Settings
from tasks.features import enforce_suites


@task(cache_policy=NO_CACHE)
def resolve_params(settings: Settings, params: TrainParams) -> TrainParams:
    """The run's params: those given explicitly, then the feature repo's pipeline.yml, then the
    environment's gate strictness (CHURN_ENV), then CHURN_MODEL_NAME, then the defaults."""
    defaults = merged(
        {
            "model_name": settings.model_name,
            "gates": environment_gates(settings.environments_dir, settings.environment),
        },
        feature_engine.load_pipeline_config(settings.feature_repo).train,
    )
    resolved = with_repo_defaults(params, defaults)
    if defaults:
        get_run_logger().info(
            "pipeline.yml train defaults %s; run params %s",
            defaults,
            resolved.model_dump(exclude_defaults=True),
        )
    return resolved


@task(cache_policy=NO_CACHE)
def check_tracking(settings: Settings) -> None:
    """Fail before any work when the MLflow store is unreachable."""
    mlflow_store.connect(settings)


@task(cache_policy=NO_CACHE)
def feature_set_missing(settings: Settings) -> bool:
    """True when no feature set has been published yet (the flow then builds one first)."""
    return not feature_sets.exists(settings.features_dir)


@task(cache_policy=NO_CACHE)
def load_training_data(settings: Settings) -> TrainingData:
    """The latest published training set, its manifest, and its checked feature schema."""
    feature_set = feature_sets.latest(settings.features_dir, settings.feature_set_cache)
    path = feature_set.path / feature_sets.TRAINING_SET
    schema = training.feature_schema(feature_set.manifest.features)
    frame = training.model_frame(feature_sets.read_table(path, feature_set.manifest.entity), schema)
    training.check_training_frame(frame, feature_set.manifest.label, schema, str(path))
    get_run_logger().info(
        "training set %s: %d rows, %d features", feature_set.version, len(frame), len(schema.names)
    )
    return TrainingData(frame, feature_set, schema)


@task(cache_policy=NO_CACHE)
def validate_training_data(settings: Settings, data: TrainingData) -> None:
    """The training set against its Great Expectations suite: a failure stops the flow before training.

    Skipped when the features flow already validated these exact bytes with this exact suite.
    """
    suites, _ = validation.load_suites(
        feature_engine.load_feature_repo(settings.feature_repo), settings.expectations_dir
    )
    suite = suites[TRAINING_SET]
    recorded = data.manifest.validation.suites.get(TRAINING_SET)
    stamp = validation.validation_stamp(suite, data.feature_set.path / feature_sets.TRAINING_SET)
    if recorded is not None and recorded.success and recorded.stamp == stamp:
        get_run_logger().info(
            "training set already passed suite %r when it was published: not re-validated",
            suite["name"],
        )
        return
    enforce_suites(settings, [(data.frame, suite, {})], f"training-set-{data.feature_set.version}")


@task(cache_policy=NO_CACHE)
def split_training_data(data: TrainingData, params: TrainParams) -> training.Split:
    """Time split with purge gaps (or a stratified split for a single snapshot); each part has both classes."""
    split = training.split_rows(data.frame, data.label, params, data.manifest.horizon_days)
    training.check_split(data, split)
    get_run_logger().info(
        "%s split: train %d, valid %d, test %d rows %s",
        split.strategy,
        len(split.train),
        len(split.valid),
        len(split.test),
        split.details,
    )
    return split


@task(cache_policy=NO_CACHE)
def fit_model(
    settings: Settings, data: TrainingData, split: training.Split, params: TrainParams
) -> FittedModel:
    """Fit the estimator (or the best of a small search, by validation AUC) and fix its decision
    threshold, on ``CHURN_TRAIN_THREADS`` math threads (more than the free cores only slows it)."""
    from threadpoolctl import threadpool_limits

    from churn.settings import idle_cores

    threads = settings.train_threads or idle_cores()
    with threadpool_limits(limits=threads):
        fitted = training.fit(data, split, params)
    get_run_logger().info(
        "fitted %s in %.1f s on %d threads: valid auc_roc %.4f, decision threshold %.3f",
        fitted.estimator_params["kind"],
        fitted.fit_seconds,
        threads,
        fitted.valid_auc_roc,
        fitted.decision_threshold,
    )
    return fitted


@task(cache_policy=NO_CACHE)
def evaluate_model(
    data: TrainingData, split: training.Split, fitted: FittedModel
) -> dict[str, float]:
    """Test-set metrics at the stored decision threshold."""
    metrics = training.evaluate(data, split, fitted)
    get_run_logger().info("test metrics: %s", {k: round(v, 4) for k, v in metrics.items()})
    return metrics


@task(cache_policy=NO_CACHE)
def log_training_run(
    settings: Settings,
    params: TrainParams,
    data: TrainingData,
    split: training.Split,
    fitted: FittedModel,
    metrics: dict[str, float],
) -> TrainingRun:
    """One MLflow run: params, metrics, datasets, evaluation plots, the manifest, tags and the model."""
    run = mlflow_store.log_training_run(settings, params, data, split, fitted, metrics)
    get_run_logger().info("MLflow run %s logged (model %s)", run.run_id, run.model_uri)
    return run


@task(cache_policy=NO_CACHE)
def register_challenger(
    settings: Settings,
    params: TrainParams,
    run: TrainingRun,
    metrics: dict[str, float],
    data: TrainingData,
) -> str:
    """Register the run's model and point the ``challenger`` alias at the new version."""
    version = mlflow_store.register_challenger(
        settings, params.model_name, run, metrics, data.manifest.version
    )
    get_run_logger().info("registered %s version %s as @challenger", params.model_name, version)
    return version


@task(cache_policy=NO_CACHE)
def publish_training_summary(
    settings: Settings,
    params: TrainParams,
    run: TrainingRun,
    version: str,
    metrics: dict[str, float],
    fitted: FittedModel,
    report: GateReport,
    promotion: Promotion,
) -> TrainResult:
    """The run's metrics as a Prefect table artifact with a link to the MLflow run."""
    create_table_artifact(
        key="training-metrics",
        table=[
            {"metric": k, "value": round(v, 4)}
            for k, v in {
                **metrics,
                "valid_auc_roc": fitted.valid_auc_roc,
                "decision_threshold": fitted.decision_threshold,
            }.items()
        ],
        description=f"test metrics of {params.model_name} v{version} (@challenger), run {run.run_id}",
    )
    create_link_artifact(
        key="mlflow-run",
        link=mlflow_store.run_url(run),
        link_text=f"MLflow run {run.run_id}",
        description=f"open with `make mlflow-ui` (store: {settings.tracking_uri})",
    )
    return TrainResult(
        run=run,
        model_name=params.model_name,
        version=version,
        metrics=metrics,
        decision_threshold=fitted.decision_threshold,
        estimator=fitted.estimator_params,
        decision=report.decision,
        report=report.to_text(),
        promotion=promotion,
    )
