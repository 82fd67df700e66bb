"""MLflow: connect, experiments, the training run (params, metrics, datasets, plots, model), the
registry's model versions, gate reports, reference samples and monitoring windows.

What a user sees in the UI is written here: every experiment opens on its runs (not MLflow 3's GenAI
overview), the registered model, its versions and the runs carry descriptions (what, which data,
the gate verdict), runs name the flow that made them as their source, test metrics are logged
against the test dataset and the logged model, and monitoring windows draw lines over time (one
trend run per champion version, a metric point per window at the window's end).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
import warnings
from datetime import UTC, datetime
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
from churn.monitoring import Condition
from churn.params import TrainParams
from churn.settings import Settings
from churn.training import Split, reference_sample

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_FILE = "reference.parquet"
UI_PORT = 5000
MONITORING_EXPERIMENT = "churn-monitoring"
TRAIN_SOURCE = "flows/train.py:train"
MONITOR_SOURCE = "flows/monitor.py:monitor"
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
"""MLflow 3's UI opens an experiment of this kind on its runs (classic ML), not the GenAI overview."""
NOTE = "mlflow.note.content"
"""The tag MLflow shows as a run's or experiment's description."""
TREND_TAG = "churn.trend"
GATES_PENDING = "- gates: not run yet"

EXPERIMENT_NOTES = {
    MONITORING_EXPERIMENT: (
        "One run per monitor window (`flows/monitor.py`), named by its bounds to the second, "
        "nested under a trend run per champion version. The trend runs hold every window's metrics "
        "as a line over time (step = window end in epoch minutes, timestamp = window end): open a "
        "trend run's Model metrics tab, or the Chart view with x-axis Step or Time."
    ),
}
REGISTERED_MODEL_NOTE = (
    "Churn classifier: the probability that an entity (the feature repo's `entity`, e.g. "
    "`customer_id`) churns within the label horizon after its `as_of`; `predict` applies the "
    "version's stored decision threshold. Trained, registered and gated by the `train` flow "
    "(`flows/train.py`); each version's description names its feature set, as-of range, test "
    "metrics and gate verdict. Aliases: `@champion` is served (the `package` flow puts it in the "
    "BentoML store), `@challenger` is the latest trained version, `@previous` the champion before "
    "the last promotion (the rollback target)."
)

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
        database = Path(uri.removeprefix("sqlite:///"))
        database.parent.mkdir(parents=True, exist_ok=True)
        if not database.exists():
            _create_store(uri, settings.mlartifacts_dir)
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


def _create_store(uri: str, artifact_root: Path) -> None:
    """Create a new SQLite store whose ``Default`` experiment keeps its artifacts under CHURN_HOME
    (MLflow's client would point it at ``./mlruns`` in whatever directory it runs from)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    artifact_root.mkdir(parents=True, exist_ok=True)
    SqlAlchemyStore(uri, artifact_root.resolve().as_uri())


def experiment_id(settings: Settings, client: Any, name: str) -> str:
    """Get or create the experiment; with the embedded SQLite store, artifacts go under CHURN_HOME.
    Every experiment is marked for classic ML so MLflow 3's UI opens it on its runs."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.tags.get(EXPERIMENT_KIND[0]) is None:  # made before the kind was set
            client.set_experiment_tag(found.experiment_id, *EXPERIMENT_KIND)
        return str(found.experiment_id)
    location = None
    if settings.tracking_uri.startswith("sqlite:"):
        location = (settings.mlartifacts_dir / name).resolve().as_uri()
    note = EXPERIMENT_NOTES.get(
        name,
        "Training runs of the `train` flow (`flows/train.py`): one run per fit, its model registered "
        "as `@challenger` and judged by the gates; each run's description says which data and verdict.",
    )
    return str(
        client.create_experiment(
            name,
            artifact_location=location,
            tags={EXPERIMENT_KIND[0]: EXPERIMENT_KIND[1], NOTE: note},
        )
    )


def source_tags(source: str) -> dict[str, str]:
    """The run's source as the MLflow UI shows it: the flow that made it, not Prefect's engine.py."""
    tags = {"mlflow.source.name": source, "mlflow.source.type": "JOB"}
    commit = git_commit()
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
    return tags


def run_url(run: TrainingRun, port: int = UI_PORT) -> str:
    """The run's page in the MLflow UI (``make mlflow-ui``)."""
    return f"http://127.0.0.1:{port}/#/experiments/{run.experiment_id}/runs/{run.run_id}"


def artifacts_url(settings: Settings, run_id: str, port: int = UI_PORT) -> str:
    """The artifacts tab of a run in the MLflow UI (``make mlflow-ui``)."""
    experiment = connect(settings).get_run(run_id).info.experiment_id
    return f"http://127.0.0.1:{port}/#/experiments/{experiment}/runs/{run_id}/artifacts"


def experiment_url(experiment: str, port: int = UI_PORT, charts: bool = False) -> str:
    """An experiment's runs in MLflow 3's classic ML view (optionally the Chart view)."""
    mode = "&compareRunsMode=CHART" if charts else ""
    return f"http://127.0.0.1:{port}/#/experiments/{experiment}/runs?workflowType=machine_learning{mode}"


def monitoring_ui_url(settings: Settings, port: int = UI_PORT) -> str:
    """Where the monitoring trends are: the ``churn-monitoring`` experiment's Chart view."""
    client = connect(settings)
    return experiment_url(experiment_id(settings, client, MONITORING_EXPERIMENT), port, charts=True)


def git_commit() -> str:
    """The checkout's commit (``-dirty`` with local changes); in the flows image, which has no
    .git, the commit it was built from (its REVISION file)."""
    revision = ROOT / "REVISION"
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
    except OSError:
        return revision.read_text().strip() if revision.is_file() else "unknown"
    if out.returncode != 0 and revision.is_file():
        return revision.read_text().strip()
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
    with mlflow.start_run(
        experiment_id=experiment,
        run_name=run_name,
        tags=source_tags(TRAIN_SOURCE),
        description=training_description(data, split, fitted, metrics),
    ) as run:
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
        file_sha = feature_sets.table_digest(training_file)
        datasets = {}
        for part, context in (("train", "training"), ("valid", "validation"), ("test", "testing")):
            datasets[part] = _dataset(data, getattr(split, part), part, training_file, file_sha)
            mlflow.log_input(datasets[part], context=context)
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
        # the test metrics belong to the test dataset and to the logged model (its page lists them)
        mlflow.log_metrics(metrics, model_id=info.model_id, dataset=datasets["test"])
        mlflow.log_metrics(
            {"valid_auc_roc": fitted.valid_auc_roc},
            model_id=info.model_id,
            dataset=datasets["valid"],
        )
        mlflow.log_metrics({"fit_seconds": fitted.fit_seconds}, model_id=info.model_id)
        for trial in fitted.trials:
            with mlflow.start_run(
                experiment_id=experiment,
                run_name=f"trial-{trial.trial}",
                nested=True,
                tags=source_tags(TRAIN_SOURCE),
            ):
                mlflow.log_params({f"estimator.{k}": v for k, v in trial.params.items()})
                mlflow.log_metrics(
                    {"valid_auc_roc": trial.valid_auc_roc, "fit_seconds": trial.fit_seconds}
                )
    return TrainingRun(run.info.run_id, experiment, info.model_uri)


def training_description(
    data: TrainingData, split: Split, fitted: FittedModel, metrics: dict[str, float]
) -> str:
    """What a training run (and its model version) is: the model, the data, the test figures; the
    gate verdict line is filled in by ``log_gate_report``."""
    manifest = data.manifest
    as_of = data.frame["as_of"]
    figures = ", ".join(
        f"{k} {metrics[k]:.4f}" for k in ("auc_roc", "pr_auc", "recall") if k in metrics
    )
    return "\n".join(
        [
            f"**{fitted.estimator_params['kind']}** churn classifier trained by the `train` flow "
            f"(`{TRAIN_SOURCE}`).",
            "",
            f"- data: feature set `{manifest.version}`, {len(data.frame)} rows of `{manifest.entity}` "
            f"as of {as_of.min():%Y-%m-%d} to {as_of.max():%Y-%m-%d} "
            f"({split.strategy} split: train {len(split.train)}, valid {len(split.valid)}, "
            f"test {len(split.test)} rows)",
            f"- test set: {figures} at decision threshold {fitted.decision_threshold:.4f}",
            GATES_PENDING,
        ]
    )


def with_gate_verdict(description: str, report: GateReport) -> str:
    """The description with its gates line saying the verdict (added when it has none)."""
    counts = report.counts
    champion = f"v{report.champion_version}" if report.champion_version else "no champion"
    line = (
        f"- gates: **{report.decision}** against {champion} ({counts['FAIL']} failed, "
        f"{counts['WARN']} warnings, {counts['SKIP']} skipped, {counts['PASS']} passed)"
    )
    if re.search(r"^- gates: .*$", description, flags=re.MULTILINE):
        return re.sub(r"^- gates: .*$", line, description, count=1, flags=re.MULTILINE)
    return f"{description.rstrip()}\n{line}" if description else line


def register_challenger(
    settings: Settings,
    model_name: str,
    run: TrainingRun,
    metrics: dict[str, float],
    feature_set_version: str,
) -> str:
    """Register the run's model and point the ``challenger`` alias at the new version; the registered
    model and the version get descriptions (the version's: the run's, naming its data)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = connect(settings)
    try:
        client.create_registered_model(model_name, description=REGISTERED_MODEL_NOTE)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        if client.get_registered_model(model_name).description != REGISTERED_MODEL_NOTE:
            client.update_registered_model(model_name, description=REGISTERED_MODEL_NOTE)
    version = mlflow.register_model(
        run.model_uri,
        model_name,
        tags={
            **{f"metric.{k}": f"{v:.6f}" for k, v in metrics.items()},
            "run_id": run.run_id,
            "feature_set.version": feature_set_version,
        },
    ).version
    note = client.get_run(run.run_id).data.tags.get(NOTE, "")
    client.update_model_version(
        model_name,
        version,
        description=f"Registered as `@challenger` from run `{run.run_id}`.\n\n{note}",
    )
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


GATES_DIR = "gates"
GATE_REPORT = "validation_report.json"


class NoGateReportError(LookupError):
    """The run is not in the tracking store, or its gates never reported (no train flow judged it)."""


def log_gate_report(
    settings: Settings, run: TrainingRun, model_name: str, report: GateReport
) -> None:
    """The report as text and JSON on the challenger's run, its decision as run and version tags."""
    client = connect(settings)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "validation_report.txt").write_text(report.to_text() + "\n")
        (Path(tmp) / GATE_REPORT).write_text(json.dumps(report.to_dict(), indent=2))
        client.log_artifacts(run.run_id, tmp, artifact_path=GATES_DIR)
    client.log_metric(run.run_id, "gates_failed", report.counts["FAIL"])
    client.set_tag(run.run_id, "gates.decision", report.decision)
    client.set_model_version_tag(
        model_name, report.challenger_version, "gates.decision", report.decision
    )
    note = client.get_run(run.run_id).data.tags.get(NOTE, "")
    client.set_tag(run.run_id, NOTE, with_gate_verdict(note, report))
    version = client.get_model_version(model_name, report.challenger_version)
    client.update_model_version(
        model_name,
        report.challenger_version,
        description=with_gate_verdict(version.description or "", report),
    )


def load_gate_report(settings: Settings, run_id: str) -> GateReport:
    """The gate report ``log_gate_report`` stored on a training run (``gates/validation_report.json``)."""
    from mlflow.exceptions import MlflowException

    client = connect(settings)
    try:
        client.get_run(run_id)
    except MlflowException as exc:
        raise NoGateReportError(
            f"no run {run_id!r} in the tracking store {settings.tracking_uri} ({exc.error_code})"
        ) from None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, f"{GATES_DIR}/{GATE_REPORT}", tmp)
        except (MlflowException, OSError) as exc:
            raise NoGateReportError(
                f"run {run_id} has no {GATES_DIR}/{GATE_REPORT}: its gates never reported "
                f"(a run of the train flow logs one) ({type(exc).__name__})"
            ) from None
        return GateReport.from_dict(json.loads(Path(local).read_text()))


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
        None if threshold is None else float(threshold),
    )


def _trend_run(client: Any, experiment: str, model_version: str) -> str:
    """The trend run of a champion version in the monitoring experiment (created on first use)."""
    found = client.search_runs(
        [experiment],
        filter_string=f"tags.`{TREND_TAG}` = 'v{model_version}'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    if found:
        return str(found[0].info.run_id)
    run = client.create_run(
        experiment,
        run_name=f"trend-champion-v{model_version}",
        tags={
            TREND_TAG: f"v{model_version}",
            "champion_version": model_version,
            **source_tags(MONITOR_SOURCE),
            NOTE: (
                f"Every monitor window judged against champion v{model_version}: one metric point per "
                "window (step = window end in epoch minutes, timestamp = window end), so the Model "
                "metrics tab and the Chart view draw lines over time. The windows are its child runs."
            ),
        },
    )
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def window_values(window: WindowMeasurement, conditions: list[Condition]) -> dict[str, float]:
    """The figures a window logs: counts, rates, latency, PSI per feature and of the prediction,
    matured-label quality (look-back and this window's) and the judged rules' values."""
    m = window.metrics
    values: dict[str, float] = {
        "count": m.count,
        "positive_rate": m.positive_rate,
        "latency_p99_ms": m.latency_p99_ms,
        "malformed_lines": window.read.malformed,
        "labelled": window.labels.labelled,
        "window_labelled": window.window_labels.labelled,
        **{f"psi.{k}": v for k, v in window.drift.psi.items()},
        **window.labels.metrics,
        **{f"window.{k}": v for k, v in window.window_labels.metrics.items()},
    }
    if window.drift.prediction_psi is not None:
        values["prediction_psi"] = window.drift.prediction_psi
    for c in conditions:
        if not c.rule.startswith("psi:"):
            values[c.rule] = c.value
    if any(c.rule == "drifted_share" for c in conditions):
        values["dataset_drift"] = float(
            next(c.breached for c in conditions if c.rule == "drifted_share")
        )
    return {k: float(v) for k, v in values.items()}


def log_monitoring_window(
    settings: Settings,
    reference: Reference,
    window: WindowMeasurement,
    reports: list[Path],
    start: datetime,
    end: datetime,
    conditions: list[Condition] | None = None,
    flow_run_id: str | None = None,
) -> str:
    """One run per window in the ``churn-monitoring`` experiment, named by the window's bounds to
    the second and nested under the champion version's trend run; the same metrics go to the
    trend run at step = window end in epoch minutes, timestamp = window end, so they draw lines
    over time. Returns the window run's id."""
    import mlflow
    from mlflow.entities import Metric

    client = connect(settings)
    experiment = experiment_id(settings, client, MONITORING_EXPERIMENT)
    moment = end.replace(tzinfo=UTC) if end.tzinfo is None else end
    step, timestamp = int(moment.timestamp() // 60), int(moment.timestamp() * 1000)
    values = window_values(window, conditions or [])
    trend = _trend_run(client, experiment, reference.model_version)
    tags = {
        **source_tags(MONITOR_SOURCE),
        "champion_version": reference.model_version,
        "window_start": str(start),
        "window_end": str(end),
    }
    if flow_run_id:
        tags["prefect.flow_run_id"] = str(flow_run_id)
    with mlflow.start_run(
        experiment_id=experiment,
        run_name=f"window-{start:%Y%m%dT%H%M%S}-{end:%Y%m%dT%H%M%S}",
        parent_run_id=trend,
        tags=tags,
        description=f"Monitor window [{start}, {end}) UTC against champion v{reference.model_version}: "
        f"{window.metrics.count} predictions.",
    ) as run:
        mlflow.log_metrics(values, step=step, timestamp=timestamp)
        for report in reports:
            mlflow.log_artifact(str(report), artifact_path="evidently")
    client.log_batch(
        trend, metrics=[Metric(k, v, timestamp, step) for k, v in values.items()], synchronous=True
    )
    return str(run.info.run_id)
