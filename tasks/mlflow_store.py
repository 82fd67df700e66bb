"""MLflow plumbing shared by the training (and later gating) tasks: connect, experiment, model I/O."""

from __future__ import annotations

import os
from pathlib import Path

from churn.settings import Settings

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


def connect(settings: Settings):
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


def experiment_id(settings: Settings, client, name: str) -> str:
    """Get or create the experiment; with the embedded SQLite store, artifacts go under CHURN_HOME."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if settings.tracking_uri.startswith("sqlite:"):
        location = (settings.home / "mlartifacts" / name).resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)
