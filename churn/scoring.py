"""Fast scoring for the service and the latency gate: the pipeline's preprocessing as numpy.

A fitted ColumnTransformer costs milliseconds per call on a one-row DataFrame, and a
HistGradientBoosting model walks its trees one Python call per tree (about 1 ms for 170 trees):
together most of a single prediction. ``compile_scorer`` reads the fitted imputers, scaler and
one-hot encoder of the pipeline ``churn.training.build_pipeline`` makes and applies them to plain
rows in numpy; for small batches it walks all HistGradientBoosting trees at once as flat arrays
(large batches go to the estimator's own compiled predictor, which is faster there).
``Scorer.verified`` checks the result against the pipeline itself on sample rows; any pipeline it
does not recognise or does not match is scored through the pipeline instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class _Numeric:
    columns: list[int]
    """Positions of the numeric features in a row."""
    medians: np.ndarray
    indicator: list[int]
    """Indexes into ``columns`` that get a missing-value indicator (features missing at fit time)."""
    mean: np.ndarray | None
    scale: np.ndarray | None


@dataclass
class _Categorical:
    columns: list[int]
    fill: str
    levels: list[dict[str, int]]
    """Per categorical feature: value -> one-hot position; unknown values encode as all zeros."""


@dataclass
class _Forest:
    """All trees of a binary HistGradientBoostingClassifier as flat node arrays (global node indexes)."""

    roots: np.ndarray
    feature: np.ndarray
    split_value: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    is_leaf: np.ndarray
    value: np.ndarray
    baseline: float

    SMALL_BATCH = (
        32  # measured crossover: the flat walk wins below, the estimator's predictor above
    )

    @classmethod
    def of(cls, estimator: Any) -> _Forest | None:
        if (
            type(estimator).__name__ != "HistGradientBoostingClassifier"
            or estimator.n_trees_per_iteration_ != 1
        ):
            return None
        nodes = [predictors[0].nodes for predictors in estimator._predictors]
        if (
            any(n["is_categorical"].any() for n in nodes)
            or type(estimator._loss).__name__ != "HalfBinomialLoss"
        ):
            return None
        offsets = np.cumsum([0] + [len(n) for n in nodes[:-1]])
        flat = np.concatenate(nodes)
        shift = np.repeat(offsets, [len(n) for n in nodes])
        return cls(
            offsets,
            flat["feature_idx"].astype(np.intp),
            flat["num_threshold"].copy(),
            flat["missing_go_to_left"].astype(bool),
            flat["left"].astype(np.intp) + shift,
            flat["right"].astype(np.intp) + shift,
            flat["is_leaf"].astype(bool),
            flat["value"].copy(),
            float(np.ravel(estimator._baseline_prediction)[0]),
        )

    def proba(self, x: np.ndarray) -> np.ndarray:
        """The estimator's predict_proba[:, 1]: every row walks every tree, one level per step."""
        node = np.broadcast_to(self.roots, (len(x), len(self.roots))).copy()
        rows = np.arange(len(x))[:, None]
        while True:
            leaf = self.is_leaf[node]
            if leaf.all():
                break
            value = x[rows, self.feature[node]]
            left = np.where(
                np.isnan(value), self.missing_left[node], value <= self.split_value[node]
            )
            node = np.where(leaf, node, np.where(left, self.left[node], self.right[node]))
        raw = self.baseline + self.value[node].sum(axis=1)
        proba: np.ndarray = 1.0 / (1.0 + np.exp(-raw))
        return proba


def plain_rows(frame: Any) -> list[list[Any]]:
    """A DataFrame's rows as the service receives them: Python values, None where missing."""
    rows: list[list[Any]] = frame.astype(object).where(frame.notna(), None).values.tolist()
    return rows


class Scorer:
    """Probabilities of the positive class for rows of feature values in model order (None = missing)."""

    def __init__(self, pipeline: Any, names: list[str], dtypes: dict[str, str]):
        self.pipeline = pipeline
        self.names = names
        self.dtypes = dtypes
        self.compiled: tuple[_Numeric, _Categorical | None, Any] | None = None
        self.forest: _Forest | None = None

    def proba(self, rows: list[list[Any]]) -> np.ndarray:
        if self.compiled is None:
            proba: np.ndarray = self.pipeline.predict_proba(self.frame(rows))[:, 1]
            return proba
        numeric, categorical, estimator = self.compiled
        x = _transform(rows, numeric, categorical)
        if self.forest is not None and len(rows) <= _Forest.SMALL_BATCH:
            return self.forest.proba(x)
        proba = estimator.predict_proba(x)[:, 1]
        return proba

    def frame(self, rows: list[list[Any]]) -> Any:
        """The rows as the DataFrame the pipeline was fitted on (the reference path)."""
        import pandas as pd

        frame = pd.DataFrame(rows, columns=self.names)
        for name, dtype in self.dtypes.items():
            frame[name] = frame[name].astype("object" if dtype == "str" else "float64")
        return frame

    def verified(self, rows: list[list[Any]], tolerance: float = 1e-9) -> Scorer:
        """Keep the compiled path only if it gives the pipeline's probabilities on ``rows``."""
        if self.compiled is None or not rows:
            return self
        slow = self.pipeline.predict_proba(self.frame(rows))[:, 1]
        k = _Forest.SMALL_BATCH
        small = np.concatenate([self.proba(rows[i : i + k]) for i in range(0, len(rows), k)])
        large = self.proba(rows * (k // len(rows) + 1))[
            : len(rows)
        ]  # over k rows: the estimator's own predictor
        gap = float(max(np.max(np.abs(small - slow)), np.max(np.abs(large - slow))))
        if gap > tolerance:
            log.warning(
                "compiled scoring differs from the pipeline by %.3g: scoring through the pipeline",
                gap,
            )
            self.compiled = self.forest = None
        return self


def compile_scorer(pipeline: Any, names: list[str], dtypes: dict[str, str]) -> Scorer:
    """A Scorer for a fitted build_pipeline() pipeline; falls back to the pipeline for any other shape."""
    scorer = Scorer(pipeline, names, dtypes)
    try:
        scorer.compiled = _compile(pipeline, names)
        scorer.forest = _Forest.of(scorer.compiled[2])
    except (AttributeError, KeyError, ValueError, TypeError) as exc:
        log.warning("pipeline not compiled (%s): scoring through the pipeline", exc)
    return scorer


def _compile(pipeline: Any, names: list[str]) -> tuple[_Numeric, _Categorical | None, Any]:
    preprocess = pipeline.named_steps["preprocess"]
    estimator = pipeline.steps[-1][1]
    if len(pipeline.steps) != 2 or getattr(preprocess, "remainder", "drop") != "drop":
        raise ValueError("expected exactly preprocess -> estimator with nothing passed through")
    parts = {
        name: (transformer, list(columns))
        for name, transformer, columns in preprocess.transformers_
        if name in ("numeric", "categorical")
    }
    if set(name for name, *_ in preprocess.transformers_) - {"numeric", "categorical", "remainder"}:
        raise ValueError("unexpected column transformers")
    numeric_pipe, numeric_cols = parts["numeric"]
    steps = dict(numeric_pipe.steps)
    imputer, scaler = steps["impute"], steps.get("scale")
    if (
        set(steps) - {"impute", "scale"}
        or imputer.strategy != "median"
        or not imputer.keep_empty_features
    ):
        raise ValueError("unexpected numeric steps")
    indicator = list(imputer.indicator_.features_) if imputer.add_indicator else []
    numeric = _Numeric(
        [names.index(c) for c in numeric_cols],
        np.array(imputer.statistics_, dtype="float64"),
        indicator,
        getattr(scaler, "mean_", None),
        getattr(scaler, "scale_", None),
    )
    if scaler is not None and (not scaler.with_mean or not scaler.with_std):
        raise ValueError("unexpected scaler options")
    categorical = None
    if "categorical" in parts and parts["categorical"][1] and parts["categorical"][0] != "drop":
        cat_pipe, cat_cols = parts["categorical"]
        cat_imputer, encoder = cat_pipe.named_steps["impute"], cat_pipe.named_steps["encode"]
        if (
            encoder.handle_unknown != "ignore"
            or encoder.drop is not None
            or cat_imputer.strategy != "constant"
        ):
            raise ValueError("unexpected categorical steps")
        if getattr(encoder, "_infrequent_enabled", False):
            raise ValueError("infrequent categories are not compiled")
        offset, levels = 0, []
        for cats in encoder.categories_:
            levels.append({str(v): offset + i for i, v in enumerate(cats)})
            offset += len(cats)
        categorical = _Categorical(
            [names.index(c) for c in cat_cols], str(cat_imputer.fill_value), levels
        )
    return numeric, categorical, estimator


def _transform(
    rows: list[list[Any]], numeric: _Numeric, categorical: _Categorical | None
) -> np.ndarray:
    values = np.array(
        [[np.nan if row[c] is None else row[c] for c in numeric.columns] for row in rows],
        dtype="float64",
    ).reshape(len(rows), len(numeric.columns))
    missing = np.isnan(values)
    out = [np.where(missing, numeric.medians, values)]
    if numeric.indicator:
        out.append(missing[:, numeric.indicator].astype("float64"))
    if numeric.mean is not None:
        stacked = np.hstack(out)
        out = [(stacked - numeric.mean) / numeric.scale]
    if categorical is not None:
        width = sum(len(levels) for levels in categorical.levels)
        onehot = np.zeros((len(rows), width))
        for i, row in enumerate(rows):
            for c, levels in zip(categorical.columns, categorical.levels):
                value = row[c]
                position = levels.get(categorical.fill if value is None else value)
                if position is not None:
                    onehot[i, position] = 1.0
        out.append(onehot)
    return np.hstack(out) if len(out) > 1 else out[0]
