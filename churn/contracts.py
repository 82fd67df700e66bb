"""What each stage hands the next: typed, immutable, defined once.

Features -> ``CheckedSources``, ``TrainingSetSummary``, ``OnlineSnapshotSummary``, published as a
``FeatureSet`` whose ``FeatureSetManifest`` is written beside the parquet files. Training ->
``TrainingData``, ``FittedModel``, ``TrainingRun``, ``ChampionScore``, ``Latency``, ``Promotion``,
``TrainResult``. Packaging -> ``PackagedModel``. Registry -> ``RegistryEvent``. Monitoring ->
``Reference``, ``WindowMeasurement`` (the verdict and result types live in ``churn.monitoring``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

# --- features ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataBounds:
    covered_from: datetime
    """Latest of the per-source first event times: every source has data from here."""
    covered_to: datetime
    """Latest event time in any source: where the data ends."""
    watermark: datetime
    """Latest time any row became known (arrival time where declared, else event time)."""


class _Record(BaseModel):
    """A contract that is written to and read back from JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSummary(_Record):
    rows: int
    files: dict[str, str]
    """Path -> sha256 of every file behind the source."""


class CheckedSources(_Record):
    sources: dict[str, SourceSummary]
    bounds: DataBounds


@dataclass(frozen=True)
class Partition:
    """One of ``count`` hash partitions of the entity: the spine rows whose entity hashes to ``index``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"partition index {self.index} outside 0..{self.count - 1}")


class PartitionSummary(_Record):
    """What one partition task built: its spine rows, positive labels and its wall time."""

    index: int
    rows: int
    positives: int
    seconds: float


class TrainingSetSummary(_Record):
    rows: int
    positives: int
    as_of_count: int
    first_as_of: datetime
    last_as_of: datetime
    cadence: str
    """Between as-of dates, e.g. "30 days" or "1 month"."""
    partitions: int = 1
    """1: one parquet file; more: a directory of ``part-NNNNN.parquet``, one per hash partition."""


class OnlineSnapshotSummary(_Record):
    rows: int
    as_of: datetime
    """The time the snapshot's features describe ("now" for serving)."""
    partitions: int = 1
    """As for the training set."""


class SuiteResult(_Record):
    success: bool
    evaluated: int
    stamp: str | None = None
    """Suite + file digest: the train flow skips re-validating exactly these bytes with this suite."""


class ValidationSummary(_Record):
    suites: dict[str, SuiteResult]
    data_docs: str | None


class FeatureColumn(_Record):
    name: str
    dtype: str
    min: float | None = None
    max: float | None = None
    """The range the view declares: the service refuses values outside it."""
    drift_reason: str | None = None
    """Set when the view excludes the column from drift checks (``drift: false``): why."""


class FeatureSetManifest(_Record):
    """``manifest.json`` of a published feature set."""

    version: str
    created_at: datetime
    feature_repo: str
    entity: str
    entity_dtype: str
    label: str
    features: list[FeatureColumn]
    sql_hashes: dict[str, str]
    horizon_days: int
    training_set: TrainingSetSummary
    online_snapshot: OnlineSnapshotSummary
    sources: dict[str, SourceSummary]
    data_bounds: DataBounds
    validation: ValidationSummary


@dataclass(frozen=True)
class FeatureSet:
    """A published feature set: its directory and manifest."""

    version: str
    path: Path
    manifest: FeatureSetManifest


# --- training ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSchema:
    numeric: list[str]
    """Numbers and booleans (a boolean is fitted and scored as 0/1)."""
    categorical: list[str]
    boolean: list[str] = field(default_factory=list)
    """The booleans among ``numeric``."""

    @property
    def names(self) -> list[str]:
        return self.numeric + self.categorical

    def dtypes(self) -> dict[str, str]:
        """Name -> the dtype the served model scores it as (str for categories, float64 else)."""
        return {n: "str" if n in self.categorical else "float64" for n in self.names}


@dataclass(frozen=True)
class TrainingData:
    frame: pd.DataFrame
    feature_set: FeatureSet
    schema: FeatureSchema

    @property
    def manifest(self) -> FeatureSetManifest:
        return self.feature_set.manifest

    @property
    def label(self) -> str:
        return self.manifest.label

    def xy(self, rows: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
        part = self.frame.iloc[rows]
        return part[self.schema.names], part[self.label].to_numpy().astype(int)


@dataclass(frozen=True)
class Trial:
    trial: int
    params: dict[str, Any]
    valid_auc_roc: float
    fit_seconds: float


@dataclass(frozen=True)
class FittedModel:
    model: Any
    """The pipeline wrapped with its decision threshold (predict applies it; predict_proba is unchanged)."""
    decision_threshold: float
    estimator_params: dict[str, Any]
    valid_auc_roc: float
    fit_seconds: float
    trials: tuple[Trial, ...] = ()

    @property
    def pipeline(self) -> Any:
        """The fitted sklearn Pipeline inside (FixedThresholdClassifier -> FrozenEstimator -> Pipeline)."""
        return self.model.estimator.estimator


@dataclass(frozen=True)
class TrainingRun:
    run_id: str
    experiment_id: str
    model_uri: str


@dataclass(frozen=True)
class ChampionScore:
    """The current champion on the challenger's test set, or why it could not be scored."""

    version: str | None
    metrics: dict[str, float] | None = None
    note: str | None = None


@dataclass(frozen=True)
class FeatureDrift:
    """The drift gate's measurement: PSI per feature, and the features a view excluded, with why."""

    psi: dict[str, float]
    excluded: dict[str, str]
    compared: str
    """What was compared with what, for the report."""


@dataclass(frozen=True)
class Timing:
    """Milliseconds per call of one kind (one row, or a batch): CPU time of the scoring thread and
    wall time, each the best (lowest) p50/p99 over the rounds."""

    cpu_p50: float
    cpu_p99: float
    wall_p50: float
    wall_p99: float


@dataclass(frozen=True)
class Latency:
    """The served scoring path, timed on one thread as the service runs it."""

    single_row: Timing
    batch: Timing
    batch_rows: int
    rounds: int


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    champion: str | None
    previous: str | None = None


@dataclass(frozen=True)
class PackagedModel:
    tag: str
    model_version: str
    run_id: str
    labels: dict[str, str]
    bento: str | None = None
    bento_path: str | None = None
    bento_url: str | None = None
    """Where the Bento was exported (the object store of the prod profile), else None."""


@dataclass(frozen=True)
class TrainResult:
    """What the train flow returns (and the CLI prints)."""

    run: TrainingRun
    model_name: str
    version: str
    metrics: dict[str, float]
    decision_threshold: float
    estimator: dict[str, Any]
    decision: str
    report: str
    promotion: Promotion
    packaged: PackagedModel | None = None

    @property
    def promoted(self) -> bool:
        return self.promotion.promoted


@dataclass(frozen=True)
class RegistryEvent:
    """One alias move, appended to the registry log."""

    at: str
    action: Literal["promote", "rollback"]
    model: str
    champion: str
    reason: str
    previous: str | None = None
    rolled_back: str | None = None


# --- monitoring --------------------------------------------------------------------------------

FeatureKind = Literal["num", "str", "bool"]


@dataclass(frozen=True)
class Reference:
    """The champion's held-out sample (features, label, out-of-sample probability) to judge traffic against."""

    model_version: str
    training_auc_roc: float | None
    entity: str
    entity_dtype: str
    features: dict[str, FeatureKind]
    """Name -> kind, in model order."""
    frame: pd.DataFrame
    positive_rate: float | None = None
    """The share of the reference the model predicts positive (at its decision threshold)."""
    decision_threshold: float | None = None
    """The model's probability cut-off (``predict`` is ``probability >= decision_threshold``)."""


@dataclass(frozen=True)
class WindowRead:
    files: int
    malformed: int


@dataclass(frozen=True)
class WindowMetrics:
    count: int
    positive_rate: float
    probability_mean: float | None
    probability_std: float | None
    latency_mean_ms: float | None
    latency_p99_ms: float
    versions: dict[str, int]
    requests: int = 0
    latency_p99_per_row_ms: float | None = None
    """p99 over requests of each request's latency divided by the rows it scored."""


@dataclass(frozen=True)
class LabelMetrics:
    """Quality on matured labels; the metrics are absent while there are none."""

    labelled: int
    metrics: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def get(self, name: str) -> float | None:
        return self.metrics.get(name)


@dataclass(frozen=True)
class Drift:
    psi: dict[str, float]
    """PSI per feature, over the rows that carry it."""
    carried: dict[str, int]
    """Rows carrying each feature (an older model's log may lack some)."""
    prediction_psi: float | None
    p_values: dict[str, float] = field(default_factory=dict)
    """Per feature: a chi-squared test on the same bins as the PSI (sample-size aware)."""


@dataclass(frozen=True)
class WindowMeasurement:
    read: WindowRead
    metrics: WindowMetrics
    drift: Drift
    labels: LabelMetrics
    """Quality on the matured labels of the whole look-back (the retrain policy counts these)."""
    window_labels: LabelMetrics = field(default_factory=lambda: LabelMetrics(0), kw_only=True)
    """Quality on the matured labels of this window's predictions alone: a drop shows undiluted."""
    sample: pd.DataFrame | None = field(default=None, kw_only=True)
    """A fixed-seed sample of the window for the HTML report."""
    labelled_sample: pd.DataFrame | None = field(default=None, kw_only=True)
