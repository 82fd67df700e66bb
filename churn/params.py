"""What a run does: one typed params model per flow, defaults in code, overrides in prefect.yaml."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from churn.featurestore import SpineSpec
from churn.settings import MODEL_NAME

P = TypeVar("P", bound=BaseModel)

MAX_PARTITIONS = 1024
"""Feature-build partitions beyond this are a typo, not a plan: each is a task and a file."""


class FeaturesParams(BaseModel):
    """Overrides for the ``features`` flow; anything left unset comes from ``feature_store.yml``."""

    model_config = ConfigDict(extra="forbid")

    first_as_of: datetime | None = Field(
        None, description="first training as-of (default: warm-up after the first event)"
    )
    last_as_of: datetime | None = Field(
        None, description="last training as-of (default: label horizon before the last event)"
    )
    every_days: int | None = Field(None, gt=0, description="days between training as-of dates")
    every_months: int | None = Field(
        None,
        gt=0,
        description="calendar months between training as-of dates (on the first of the month)",
    )
    online_as_of: datetime | None = Field(
        None, description="as-of of the online snapshot (default: midnight after the latest event)"
    )
    partitions: int = Field(
        1,
        description="hash partitions of the entity: each is evaluated as its own task with its own "
        "DuckDB connection, written as part-NNNNN.parquet of one feature set (1: one query per table)",
    )

    @field_validator("partitions")
    @classmethod
    def _partitions(cls, value: int) -> int:
        if not 1 <= value <= MAX_PARTITIONS:
            raise ValueError(
                f"partitions must be between 1 (one query per table) and {MAX_PARTITIONS}, got {value}"
            )
        return value

    @model_validator(mode="after")
    def _ordered(self) -> FeaturesParams:
        if self.first_as_of and self.last_as_of and self.first_as_of > self.last_as_of:
            raise ValueError(
                f"first_as_of {self.first_as_of} is after last_as_of {self.last_as_of}"
            )
        if self.every_days and self.every_months:
            raise ValueError("set every_days or every_months, not both")
        return self

    def spine(self, spine: SpineSpec) -> SpineSpec:
        """The repo's spine with these overrides (a cadence given here replaces the repo's)."""
        update: dict[str, Any] = {
            k: v
            for k, v in {"first_as_of": self.first_as_of, "last_as_of": self.last_as_of}.items()
            if v
        }
        if self.every_days:
            update |= {"every_days": self.every_days, "every_months": None}
        if self.every_months:
            update["every_months"] = self.every_months
        return spine.model_copy(update=update)


class HistGradientBoostingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["hist_gradient_boosting"] = "hist_gradient_boosting"
    learning_rate: float = Field(0.05, gt=0, le=1)
    max_iter: int = Field(300, ge=1)
    max_leaf_nodes: int = Field(31, ge=2)
    min_samples_leaf: int = Field(40, ge=1)
    l2_regularization: float = Field(0.0, ge=0)
    early_stopping: bool = True


class GradientBoostingParams(BaseModel):
    """The seed article's estimator."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["gradient_boosting"] = "gradient_boosting"
    n_estimators: int = Field(150, ge=1)
    learning_rate: float = Field(0.1, gt=0, le=1)
    max_depth: int = Field(3, ge=1)
    subsample: float = Field(0.8, gt=0, le=1)


class LogisticRegressionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["logistic_regression"] = "logistic_regression"
    C: float = Field(1.0, gt=0)
    max_iter: int = Field(1000, ge=1)


EstimatorParams = Annotated[
    HistGradientBoostingParams | GradientBoostingParams | LogisticRegressionParams,
    Field(discriminator="kind"),
]


GateMode = Literal["enforce", "warn"]


class PerformanceGate(BaseModel):
    """Minimum test metrics at the model's decision threshold; WARN within ``warn_band`` below a minimum."""

    model_config = ConfigDict(extra="forbid")
    mode: GateMode = "enforce"
    min_auc_roc: float = Field(0.75, ge=0, le=1)
    min_pr_auc: float = Field(0.2, ge=0, le=1)
    min_recall: float = Field(0.3, ge=0, le=1)
    warn_band: float = Field(0.02, ge=0, le=1)


class RegressionGate(BaseModel):
    """Challenger vs champion, both scored on the challenger's (current) test set."""

    model_config = ConfigDict(extra="forbid")
    mode: GateMode = "enforce"
    metrics: list[Literal["auc_roc", "pr_auc", "f1", "recall", "precision"]] = ["auc_roc", "pr_auc"]
    max_degradation: float = Field(
        0.01, ge=0, le=1, description="a drop up to this is WARN, beyond it FAIL"
    )


class LatencyGate(BaseModel):
    """p50/p99 of scoring the model as served (its scoring path, one thread), one row and 1,000 rows
    per call. Judged on CPU time, the best of ``rounds`` rounds, so a busy machine cannot fail a model;
    wall time is reported beside it."""

    model_config = ConfigDict(extra="forbid")
    mode: GateMode = "enforce"
    max_p99_single_ms: float = Field(50.0, gt=0)
    max_p99_batch_ms: float = Field(500.0, gt=0)
    calls: int = Field(
        200, ge=20, le=10_000, description="single-row calls per round (batch calls: a tenth)"
    )
    rounds: int = Field(
        5, ge=1, le=50, description="repetitions; the verdict takes the best round's p99"
    )


class DriftGate(BaseModel):
    """PSI per feature between the training set's latest as-of date(s) (the population the model was
    last tested on) and the online snapshot serving will use. Columns a view marks ``drift: false``
    are reported as SKIP with their reason."""

    model_config = ConfigDict(extra="forbid")
    mode: GateMode = "enforce"
    warn_psi: float = Field(0.1, ge=0)
    max_psi: float = Field(0.25, ge=0)
    bins: int = Field(10, ge=2, le=100)
    reference_dates: int = Field(
        1, ge=1, description="latest training as-of dates the snapshot is compared with"
    )


class SliceGate(BaseModel):
    """Test AUC per level of each slice column; FAIL when the best and worst differ by more than max_gap."""

    model_config = ConfigDict(extra="forbid")
    mode: GateMode = "enforce"
    columns: list[str] | None = Field(None, description="default: every categorical feature")
    max_gap: float = Field(0.15, ge=0, le=1)
    min_rows: int = Field(300, ge=10)


class GateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    performance: PerformanceGate = PerformanceGate()
    regression: RegressionGate = RegressionGate()
    latency: LatencyGate = LatencyGate()
    drift: DriftGate = DriftGate()
    slices: SliceGate = SliceGate()


class TrainParams(BaseModel):
    """The ``train`` flow: which estimator, how to split, and whether to search hyperparameters."""

    model_config = ConfigDict(extra="forbid")

    estimator: EstimatorParams = HistGradientBoostingParams()
    class_weight: Literal["balanced", "none"] = Field(
        "none",
        description='"balanced" reweights the rare churn class; the default keeps probabilities '
        "calibrated and handles imbalance by choosing the decision threshold on validation data",
    )
    test_dates: int = Field(2, ge=1, description="latest as-of dates held out for the test set")
    valid_dates: int = Field(
        1, ge=1, description="as-of dates before the test set used to pick the decision threshold"
    )
    random_test_size: float = Field(
        0.2, gt=0, lt=0.5, description="test share when the data is a single snapshot"
    )
    seed: int = 42
    search: bool = Field(
        False, description="random hyperparameter search in nested runs, best by validation AUC"
    )
    search_trials: int = Field(6, ge=1, le=50)
    rebuild_features: bool = Field(
        False, description="run the features flow first even if a feature set exists"
    )
    experiment: str = Field("churn", min_length=1)
    model_name: str = Field(MODEL_NAME, min_length=1)
    gates: GateParams = GateParams()
    promote: bool = Field(
        True, description="move @champion to the challenger when the gates approve it"
    )
    package: bool = Field(
        False,
        description="after a promotion, package the new champion for serving (the service picks it up)",
    )


class RollbackParams(BaseModel):
    """The ``rollback`` flow: why the champion is being rolled back (recorded on the model version)."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(
        min_length=3,
        description="why; kept as a tag on the rolled-back version and in the event log",
    )
    model_name: str = Field(MODEL_NAME, min_length=1)


class FeatureDriftRule(BaseModel):
    """When one feature has drifted: PSI above ``max_psi``, or a chi-squared test on the same bins
    with p below ``alpha`` while PSI is at least ``min_psi`` (a real shift of a meaningful size,
    which on a large window the PSI limit alone can miss)."""

    model_config = ConfigDict(extra="forbid")
    max_psi: float = Field(0.25, gt=0)
    min_psi: float = Field(0.1, ge=0, description="the smallest effect the test rule flags")
    alpha: float = Field(1e-3, gt=0, lt=1, description="the chi-squared test's p-value limit")


class AlertRules(BaseModel):
    """Thresholds the monitor raises alerts on; a window with fewer than ``min_rows`` predictions is not judged."""

    model_config = ConfigDict(extra="forbid")
    min_rows: int = Field(100, ge=1)
    max_positive_rate: float | None = Field(
        None,
        gt=0,
        le=1,
        description="an absolute limit on the predicted positive rate instead of the ratio band",
    )
    positive_rate_ratio: float = Field(
        2.0,
        gt=1,
        description="the predicted positive rate may differ from the reference's by this factor either way",
    )
    max_p99_latency_ms: float = Field(
        50.0, gt=0, description="p99 of each request's latency per row it scored"
    )
    min_latency_requests: int = Field(
        50, ge=1, description="requests a window needs before its latency is judged"
    )
    max_drifted_share: float = Field(
        0.3, gt=0, le=1, description="share of drifted features that means dataset drift"
    )
    drift: FeatureDriftRule = FeatureDriftRule()
    feature_drift: dict[str, FeatureDriftRule] = Field(
        default_factory=dict, description="per-feature rules instead of ``drift`` (by feature name)"
    )
    max_auc_roc_drop: float = Field(
        0.05,
        gt=0,
        le=1,
        description="auc_roc on matured labels below the training auc_roc by more than this",
    )
    min_labelled: int = Field(
        200, ge=10, description="matured labels a window needs before its AUC is judged"
    )
    clear_ratio: float = Field(
        0.8,
        gt=0,
        le=1,
        description="an open alert clears only below its limit x clear_ratio (no flapping)",
    )


class RetrainPolicy(BaseModel):
    """When the monitor triggers retraining: a breach (dataset drift or an auc_roc drop) in ``breaches`` of the
    last ``windows`` windows, at least ``min_new_labels`` matured labels, and ``cooldown_hours`` since it last fired."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    breaches: int = Field(2, ge=1)
    windows: int = Field(3, ge=1)
    min_new_labels: int = Field(500, ge=0)
    cooldown_hours: float = Field(24.0, ge=0)
    deployment: str = Field(
        "train/train-weekly", description="the deployment run_deployment starts"
    )
    train_overrides: dict[str, Any] = Field(
        default_factory=lambda: {"gates": {"drift": {"mode": "warn"}}},
        description="TrainParams for the retrain run; by default the drift gate only warns, since the population "
        "moving is why this run exists; every other gate still enforces",
    )
    in_process: bool = Field(
        False, description="run the train flow as a subflow instead (no worker needed)"
    )

    @model_validator(mode="after")
    def _fits(self) -> RetrainPolicy:
        if self.breaches > self.windows:
            raise ValueError(f"breaches ({self.breaches}) cannot exceed windows ({self.windows})")
        return self


class MonitorParams(BaseModel):
    """The ``monitor`` flow: which window of the prediction log to judge, and how."""

    model_config = ConfigDict(extra="forbid")
    window_minutes: int = Field(60, ge=1, le=60 * 24 * 31)
    window_end: datetime | None = Field(
        None,
        description="window end (UTC; default: now, less the service's log flush age when the "
        "log is on an object store); the window is [end - window_minutes, end)",
    )
    window_start: datetime | None = Field(
        None, description="window start instead of window_end - window_minutes"
    )
    time_axis: Literal["request", "as_of"] = Field(
        "request",
        description="what the window bounds: when the service answered (request) or the time the "
        "features describe (as_of), e.g. to judge a backfill or a replay of a period by its own time",
    )
    model_name: str = Field(MODEL_NAME, min_length=1)
    report_sample_rows: int = Field(
        5000, ge=100, le=200_000, description="rows of each side Evidently's HTML report gets"
    )
    psi_bins: int = Field(10, ge=2, le=100)
    label_lookback_days: int = Field(
        60, ge=1, le=730, description="predictions this far back are joined to matured labels"
    )
    alerts: AlertRules = AlertRules()
    notify_block: str | None = Field(
        None,
        description="Prefect notification block (e.g. a webhook) alerts go to; always also alerts.jsonl",
    )
    retrain: RetrainPolicy = RetrainPolicy()


class PipelineConfig(BaseModel):
    """``pipeline.yml`` beside ``feature_store.yml``: a repo's own defaults for the features, train and
    monitor flows (every deployment and the retrain policy use them); params given explicitly
    override them."""

    model_config = ConfigDict(extra="forbid")
    features: dict[str, Any] = Field(
        default_factory=dict, description="FeaturesParams: cadence, as-of bounds, partitions, ..."
    )
    train: dict[str, Any] = Field(
        default_factory=dict, description="TrainParams: estimator, split, gates, ..."
    )
    monitor: dict[str, Any] = Field(
        default_factory=dict, description="MonitorParams: alerts, retrain, ..."
    )

    @model_validator(mode="after")
    def _valid(self) -> PipelineConfig:
        sections: tuple[tuple[str, type[BaseModel]], ...] = (
            ("features", FeaturesParams),
            ("train", TrainParams),
            ("monitor", MonitorParams),
        )
        for section, model in sections:
            try:
                model(**getattr(self, section))
            except ValidationError as exc:
                fields = "; ".join(
                    f"{section}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
                )
                raise ValueError(fields) from None
        return self


def merged(defaults: dict[str, Any], explicit: dict[str, Any]) -> dict[str, Any]:
    """``explicit`` over ``defaults``, nested mappings merged key by key; a mapping of another
    ``kind`` (another estimator) replaces the default instead of mixing with it."""
    out = dict(defaults)
    for key, value in explicit.items():
        base = out.get(key)
        if (
            isinstance(base, dict)
            and isinstance(value, dict)
            and base.get("kind") == value.get("kind", base.get("kind"))
        ):
            out[key] = merged(base, value)
        else:
            out[key] = value
    return out


def with_repo_defaults(params: P, defaults: dict[str, Any]) -> P:
    """``params`` with the repo's defaults filled in wherever a field was not set explicitly."""
    return type(params)(**merged(defaults, explicit(params)))


def explicit(model: BaseModel) -> dict[str, Any]:
    """The fields set explicitly, nested; a chosen estimator (a model with a ``kind``) whole, since
    the choice of kind is what was set even when every hyperparameter is its default."""
    out: dict[str, Any] = {}
    for name in model.model_fields_set:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            out[name] = (
                value.model_dump() if "kind" in type(value).model_fields else explicit(value)
            )
        else:
            out[name] = value
    return out


def parse_pipeline_config(text: str, where: str = "pipeline.yml") -> PipelineConfig:
    from churn.featurestore import explain, load_yaml_mapping

    try:
        return PipelineConfig(**load_yaml_mapping(text, where))
    except ValidationError as exc:
        raise explain(exc, where) from None
