"""Training logic: data checks, the time split, the model pipeline, threshold choice and metrics.

Pure functions over DataFrames and arrays; MLflow, Prefect and files stay in tasks/.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from churn.contracts import FeatureColumn, FeatureSchema, FittedModel, TrainingData, Trial
from churn.featurestore import ColumnSpec
from churn.metrics import classification_metrics, decide
from churn.params import EstimatorParams, TrainParams

log = logging.getLogger(__name__)

AS_OF = "as_of"


class TrainingDataError(ValueError):
    """The training set cannot train a model; the message says what is wrong and where."""


def feature_schema(features: Sequence[FeatureColumn] | Sequence[ColumnSpec]) -> FeatureSchema:
    """Split the manifest's feature list (name, dtype) into numeric and categorical columns."""
    numeric = [f.name for f in features if f.dtype in ("int64", "float64", "bool")]
    categorical = [f.name for f in features if f.dtype == "str"]
    return FeatureSchema(numeric, categorical, [f.name for f in features if f.dtype == "bool"])


def model_frame(frame: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """The frame as the model is fitted on it: booleans as 0/1 floats (missing stays missing)."""
    if not schema.boolean:
        return frame
    return frame.assign(**{name: frame[name].astype("float64") for name in schema.boolean})


def check_training_frame(
    frame: pd.DataFrame, label: str, schema: FeatureSchema, where: str
) -> None:
    """Raise one error listing every problem that would make training meaningless."""
    if len(frame) == 0:
        raise TrainingDataError(f"{where}: the training set is empty")
    problems = []
    missing = [c for c in [label, *schema.names] if c not in frame.columns]
    if missing:
        raise TrainingDataError(f"{where}: missing columns {missing}")
    values = frame[label]
    bad = values[~values.isin([0, 1])]
    if values.isna().any() or len(bad):
        shown = sorted(
            {str(v) for v in bad.unique()[:5]} | ({"null"} if values.isna().any() else set())
        )
        problems.append(f"label column {label!r} must hold only 0 and 1; found {', '.join(shown)}")
    elif values.nunique() < 2:
        problems.append(
            f"label column {label!r} has a single class ({int(values.iloc[0])}) in {len(frame)} rows"
        )
    null_cols = [c for c in schema.names if frame[c].isna().all()]
    if null_cols:
        problems.append(f"feature columns entirely null: {null_cols}")
    if problems:
        raise TrainingDataError(f"{where}: " + "; ".join(problems))


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    strategy: str
    details: dict[str, Any] = field(default_factory=dict)


def split_rows(frame: pd.DataFrame, label: str, params: TrainParams, horizon_days: int) -> Split:
    """Time split when the set has as-of history; stratified random split for a single snapshot."""
    dates = np.sort(frame[AS_OF].unique())
    if len(dates) == 1:
        return _stratified(frame[label].to_numpy(), params)
    return _time_split(frame[AS_OF], dates, params, horizon_days)


def _time_split(
    as_of: pd.Series, dates: np.ndarray, params: TrainParams, horizon_days: int
) -> Split:
    """Test on the latest as-of dates, validate on earlier ones, train on the rest.

    Each earlier part ends at least one label horizon before the next begins (a purge gap), so no
    training label looks into the validation or test period.
    """
    horizon = np.timedelta64(timedelta(days=horizon_days))
    test_dates = dates[-params.test_dates :]
    before_test = dates[dates <= test_dates[0] - horizon]
    valid_dates = before_test[-params.valid_dates :]
    train_dates = (
        before_test[before_test <= valid_dates[0] - horizon]
        if len(valid_dates)
        else before_test[:0]
    )
    if len(train_dates) == 0 or len(valid_dates) < params.valid_dates:
        raise TrainingDataError(
            f"time split needs more as-of dates: {len(dates)} dates, {params.test_dates} for test, "
            f"{params.valid_dates} for validation and at least one for training, each {horizon_days} days "
            "(the label horizon) apart from the next part; build the features over a longer history or "
            "lower test_dates / valid_dates"
        )
    values = as_of.to_numpy()

    def rows(chosen: np.ndarray) -> np.ndarray:
        return np.flatnonzero(np.isin(values, chosen))

    def span(chosen: np.ndarray) -> str:
        return f"{pd.Timestamp(chosen[0]).date()}..{pd.Timestamp(chosen[-1]).date()}"

    return Split(
        rows(train_dates),
        rows(valid_dates),
        rows(test_dates),
        "time",
        {
            "train_as_of": span(train_dates),
            "valid_as_of": span(valid_dates),
            "test_as_of": span(test_dates),
            "purge_days": horizon_days,
        },
    )


def _stratified(y: np.ndarray, params: TrainParams) -> Split:
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    rest, test = train_test_split(
        index, test_size=params.random_test_size, stratify=y, random_state=params.seed
    )
    train, valid = train_test_split(
        rest, test_size=params.random_test_size, stratify=y[rest], random_state=params.seed
    )
    return Split(
        np.sort(train),
        np.sort(valid),
        np.sort(test),
        "stratified_random",
        {
            "test_size": params.random_test_size,
            "reason": "single as-of snapshot: no time to split on",
        },
    )


def build_pipeline(
    schema: FeatureSchema, estimator: EstimatorParams, class_weight: str, seed: int
) -> Any:
    """Imputation and encoding for numeric and categorical columns, then the chosen estimator."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    weight = "balanced" if class_weight == "balanced" else None
    numeric_steps = [
        ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True))
    ]
    if estimator.kind == "logistic_regression":
        numeric_steps.append(("scale", StandardScaler()))
        model = LogisticRegression(C=estimator.C, max_iter=estimator.max_iter, class_weight=weight)
    elif estimator.kind == "gradient_boosting":
        model = GradientBoostingClassifier(
            n_estimators=estimator.n_estimators,
            learning_rate=estimator.learning_rate,
            max_depth=estimator.max_depth,
            subsample=estimator.subsample,
            random_state=seed,
        )
    else:
        model = HistGradientBoostingClassifier(
            learning_rate=estimator.learning_rate,
            max_iter=estimator.max_iter,
            max_leaf_nodes=estimator.max_leaf_nodes,
            min_samples_leaf=estimator.min_samples_leaf,
            l2_regularization=estimator.l2_regularization,
            early_stopping=estimator.early_stopping,
            class_weight=weight,
            random_state=seed,
        )
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
            ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    preprocess = ColumnTransformer(
        [
            ("numeric", Pipeline(numeric_steps), schema.numeric),
            ("categorical", categorical, schema.categorical),
        ],
        verbose_feature_names_out=False,
    )
    return Pipeline([("preprocess", preprocess), ("model", model)])


def fit_kwargs(estimator: EstimatorParams, class_weight: str, y: np.ndarray) -> dict[str, Any]:
    """GradientBoosting has no class_weight: pass balanced sample weights instead."""
    if estimator.kind == "gradient_boosting" and class_weight == "balanced":
        from sklearn.utils.class_weight import compute_sample_weight

        return {"model__sample_weight": compute_sample_weight("balanced", y)}
    return {}


def choose_threshold(y_true: np.ndarray, proba: np.ndarray) -> float:
    """The probability cut-off that maximises F1 on validation data."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(y_true, proba)
    f1 = np.divide(
        2 * precision * recall,
        precision + recall,
        out=np.zeros_like(precision),
        where=(precision + recall) > 0,
    )
    return float(thresholds[int(np.argmax(f1[:-1]))])


def search_space(base: EstimatorParams, trials: int, seed: int) -> list[EstimatorParams]:
    """A small random search around the estimator's defaults (same kind, varied hyperparameters)."""
    rng = np.random.default_rng(seed)
    grids: dict[str, dict[str, list[Any]]] = {
        "hist_gradient_boosting": {
            "learning_rate": [0.03, 0.05, 0.1],
            "max_leaf_nodes": [15, 31, 63],
            "min_samples_leaf": [20, 40, 100],
            "l2_regularization": [0.0, 0.1, 1.0],
        },
        "gradient_boosting": {
            "learning_rate": [0.05, 0.1],
            "max_depth": [2, 3, 4],
            "n_estimators": [100, 200],
        },
        "logistic_regression": {"C": [0.01, 0.1, 1.0, 10.0]},
    }
    candidates = []
    for _ in range(trials):
        update = {name: v[int(rng.integers(len(v)))] for name, v in grids[base.kind].items()}
        candidates.append(base.model_copy(update=update))
    return candidates


def check_split(data: TrainingData, split: Split) -> None:
    """Every part of the split must hold both classes, or its metrics mean nothing."""
    y = data.frame[data.label].to_numpy()
    for part in ("train", "valid", "test"):
        rows = getattr(split, part)
        if len(np.unique(y[rows])) < 2:
            raise TrainingDataError(
                f"{data.feature_set.path}: the {part} part ({len(rows)} rows, {split.details}) has a single class; "
                "more history or other test_dates / valid_dates are needed"
            )


def _fit_one(
    data: TrainingData, split: Split, params: TrainParams, estimator: EstimatorParams
) -> tuple[Any, np.ndarray, float]:
    """The fitted pipeline, its validation probabilities and the fit time."""
    x_train, y_train = data.xy(split.train)
    x_valid, _ = data.xy(split.valid)
    pipeline = build_pipeline(data.schema, estimator, params.class_weight, params.seed)
    started = time.perf_counter()
    pipeline.fit(x_train, y_train, **fit_kwargs(estimator, params.class_weight, y_train))
    seconds = time.perf_counter() - started
    return pipeline, pipeline.predict_proba(x_valid)[:, 1], seconds


def fit(data: TrainingData, split: Split, params: TrainParams) -> FittedModel:
    """Fit the estimator (or the best of a small search, by validation AUC) and fix its decision threshold."""
    from sklearn.frozen import FrozenEstimator
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import FixedThresholdClassifier

    x_valid, y_valid = data.xy(split.valid)
    candidates = (
        search_space(params.estimator, params.search_trials, params.seed) if params.search else []
    )
    trials: list[Trial] = []
    best: tuple[Any, float, float, EstimatorParams, np.ndarray] | None = None
    for i, estimator in enumerate([params.estimator, *candidates]):
        pipeline, valid_proba, seconds = _fit_one(data, split, params, estimator)
        valid_auc = float(roc_auc_score(y_valid, valid_proba))
        trials.append(Trial(i, estimator.model_dump(), valid_auc, seconds))
        log.info("trial %d: valid AUC %.4f (%s)", i, valid_auc, estimator.model_dump())
        if best is None or valid_auc > best[1]:
            best = (pipeline, valid_auc, seconds, estimator, valid_proba)
    assert best is not None
    pipeline, valid_auc, seconds, estimator, valid_proba = best
    threshold = choose_threshold(y_valid, valid_proba)  # the same probabilities the AUC used
    model = FixedThresholdClassifier(
        FrozenEstimator(pipeline), threshold=threshold, response_method="predict_proba"
    )
    model.fit(
        x_valid, y_valid
    )  # the frozen pipeline is not refitted: this only records the threshold
    return FittedModel(
        model,
        threshold,
        estimator.model_dump(),
        valid_auc,
        seconds,
        tuple(trials) if params.search else (),
    )


def evaluate(data: TrainingData, split: Split, fitted: FittedModel) -> dict[str, float]:
    """Test-set metrics at the stored decision threshold."""
    x_test, y_test = data.xy(split.test)
    proba = fitted.model.predict_proba(x_test)[:, 1]
    return classification_metrics(y_test, proba, decide(proba, fitted.decision_threshold))


def stratified_sample(y: np.ndarray, size: int, seed: int) -> np.ndarray:
    if len(y) <= size:
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    picked, _ = train_test_split(np.arange(len(y)), train_size=size, stratify=y, random_state=seed)
    return np.asarray(picked)


REFERENCE_ROWS = 20_000


def reference_sample(
    data: TrainingData, split: Split, fitted: FittedModel, seed: int
) -> pd.DataFrame:
    """What monitoring compares live traffic with: held-out rows (the newest, closest to serving)
    with their label and the model's out-of-sample probability, at most REFERENCE_ROWS of them."""
    test = data.frame.iloc[split.test]
    sample = test.sample(n=min(REFERENCE_ROWS, len(test)), random_state=seed)
    out = sample[[*data.schema.names, data.label]].reset_index(drop=True)
    out["probability"] = fitted.model.predict_proba(sample[data.schema.names])[:, 1]
    return out
