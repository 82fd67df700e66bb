"""The feature-repo contract: store config, feature views and their metadata, parsed from text.

A feature repo is a directory (``CHURN_FEATURE_REPO``, default ``feature_sql/``) holding:

- ``feature_store.yml``: the entity, the source tables (path, typed columns, event and arrival time
  columns) and the spine schedule (as-of cadence, warm-up, label horizon);
- ``population.sql``: who is eligible at each as-of, from the relation ``as_of_dates(as_of)``;
- ``label.sql``: the label of each ``spine(<entity>, as_of)`` row (``$horizon_days`` is bound);
- ``views/<name>.sql`` + ``views/<name>.yml``: one feature view per file pair, evaluated against
  ``spine(<entity>, as_of)`` and returning one row per spine row keyed by (entity, as_of).

Reading the files is the caller's job; this module only parses and checks what they say.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from churn.predictions import FIELDS as PREDICTION_LOG_FIELDS

Dtype = Literal["int64", "float64", "str", "bool", "timestamp", "date"]
IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
AS_OF = "as_of"

# DuckDB type names each declared dtype accepts (families, so an INTEGER column satisfies int64).
_DUCK_TYPES: dict[str, tuple[str, ...]] = {
    "int64": (
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "HUGEINT",
    ),
    "float64": ("FLOAT", "DOUBLE", "DECIMAL", "REAL"),
    "str": ("VARCHAR",),
    "bool": ("BOOLEAN",),
    "timestamp": (
        "TIMESTAMP",
        "TIMESTAMP_NS",
        "TIMESTAMP_MS",
        "TIMESTAMP_S",
        "TIMESTAMP WITH TIME ZONE",
    ),
    "date": ("DATE",),
}


class FeatureRepoError(ValueError):
    """The feature repo (config, SQL or metadata) is inconsistent; the message names file and field."""


def dtype_accepts(dtype: str, duckdb_type: str) -> bool:
    """Whether a DuckDB column type satisfies a declared dtype (a float64 column may hold integers)."""
    base = duckdb_type.split("(")[0].strip().upper()
    allowed = _DUCK_TYPES[dtype] + (_DUCK_TYPES["int64"] if dtype == "float64" else ())
    return base in allowed


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Strict):
    name: str
    dtype: Dtype
    description: str = Field(min_length=1)
    nullable: bool = True
    """Whether the view may return nulls here (checked by the generated GX suites)."""
    min: float | None = None
    max: float | None = None
    values: list[str] | None = None
    """The allowed values of a categorical column."""
    drift: bool = True
    """``false`` leaves the column out of the drift gate (e.g. one that grows with time, like tenure)."""
    drift_reason: str | None = None
    """Why the column is left out of drift checks: shown in the validation report (required with ``drift: false``)."""

    @field_validator("name")
    @classmethod
    def _snake_case(cls, value: str) -> str:
        if not IDENT.match(value):
            raise ValueError(f"column name {value!r} must be snake_case ([a-z_][a-z0-9_]*)")
        return value

    @model_validator(mode="after")
    def _drift_reason(self) -> ColumnSpec:
        if self.dtype in ("timestamp", "date"):
            raise ValueError(
                f"column {self.name!r}: a feature must be int64, float64, str or bool, not {self.dtype}; "
                "turn a time into a number in the SQL (e.g. date_diff('day', t, as_of))"
            )
        if not self.drift and not self.drift_reason:
            raise ValueError(
                f"column {self.name!r}: drift: false needs a drift_reason (shown in the report)"
            )
        if self.drift and self.drift_reason:
            raise ValueError(f"column {self.name!r}: drift_reason is only for drift: false")
        return self


class ViewSpec(_Strict):
    name: str
    entity: str
    description: str = Field(min_length=1)
    columns: list[ColumnSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_columns(self) -> ViewSpec:
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate columns {dupes}")
        return self


class SourceSpec(_Strict):
    path: str = Field(min_length=1)
    """Parquet file or glob, relative to the raw data directory unless absolute."""
    description: str = ""
    columns: dict[str, Dtype] = Field(min_length=1)
    event_ts: str | None = None
    """When the row happened; features use rows strictly before as_of by this column."""
    arrival_ts: str | None = None
    """When the row became known; features also need it strictly before as_of."""
    unique_key: list[str] | None = None
    """Columns that identify a row (checked unique and not null)."""
    max_staleness_days: int | None = Field(None, gt=0)
    """The latest event may be at most this many days older than the newest event of any source."""

    @model_validator(mode="after")
    def _time_columns_declared(self) -> SourceSpec:
        for role in ("event_ts", "arrival_ts"):
            col = getattr(self, role)
            if col is not None and self.columns.get(col) not in ("timestamp", "date"):
                raise ValueError(f"{role} {col!r} must be a declared timestamp or date column")
        unknown = [c for c in self.unique_key or [] if c not in self.columns]
        if unknown:
            raise ValueError(f"unique_key columns {unknown} are not declared")
        if self.max_staleness_days is not None and self.event_ts is None:
            raise ValueError("max_staleness_days needs an event_ts column")
        return self


class SpineSpec(_Strict):
    every_days: int = Field(30, gt=0)
    """Cadence of the training as-of dates, in days (unless ``every_months`` is set)."""
    every_months: int | None = Field(None, gt=0)
    """Calendar-month cadence instead: as-of dates on the first of every N-th month."""
    warmup_days: int = Field(90, ge=0)
    """Default first as-of: this long after the earliest event, so windows are filled."""
    horizon_days: int = Field(30, gt=0)
    """Label horizon; the last as-of leaves this much observed time after it."""
    first_as_of: datetime | None = None
    """First training as-of (default: ``warmup_days`` after the first event)."""
    last_as_of: datetime | None = None
    """Last training as-of (default: the label horizon before the last event)."""
    snapshot_at: datetime | None = None
    """For data without history: the one as-of used for training and serving."""


class StoreConfig(_Strict):
    entity: str
    entity_dtype: Literal["int64", "str"] = "int64"
    label: str = "label"
    sources: dict[str, SourceSpec] = Field(min_length=1)
    spine: SpineSpec = SpineSpec()

    @model_validator(mode="after")
    def _names(self) -> StoreConfig:
        if self.entity in PREDICTION_LOG_FIELDS:
            raise ValueError(
                f"entity {self.entity!r} is the name of a prediction-log field; rename the entity column"
            )
        for name, src in self.sources.items():
            if not IDENT.match(name):
                raise ValueError(
                    f"source name {name!r} must be a SQL identifier ([a-z_][a-z0-9_]*)"
                )
            if self.entity not in src.columns:
                raise ValueError(
                    f"source {name!r} does not declare the entity column {self.entity!r}"
                )
            if src.columns[self.entity] != self.entity_dtype:
                raise ValueError(
                    f"source {name!r} declares {self.entity} as {src.columns[self.entity]} but "
                    f"entity_dtype is {self.entity_dtype}: declare the same type in both"
                )
        if self.spine.snapshot_at is None and not any(s.event_ts for s in self.sources.values()):
            raise ValueError("no source declares event_ts: set spine.snapshot_at for snapshot data")
        return self


@dataclass(frozen=True)
class FeatureView:
    spec: ViewSpec
    sql: str
    path: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def sql_hash(self) -> str:
        return sql_hash(self.sql)


@dataclass(frozen=True)
class FeatureRepo:
    config: StoreConfig
    population_sql: str
    label_sql: str
    views: tuple[FeatureView, ...]
    root: str

    @property
    def feature_columns(self) -> list[ColumnSpec]:
        return [c for v in self.views for c in v.spec.columns]

    def sql_hashes(self) -> dict[str, str]:
        hashes = {v.name: v.sql_hash for v in self.views}
        hashes["population"] = sql_hash(self.population_sql)
        hashes["label"] = sql_hash(self.label_sql)
        return hashes


def sql_hash(sql: str) -> str:
    return hashlib.sha256(sql.strip().encode()).hexdigest()[:16]


def load_yaml_mapping(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise FeatureRepoError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise FeatureRepoError(f"{where}: expected a mapping at the top level")
    return data


def explain(exc: ValidationError, where: str) -> FeatureRepoError:
    lines = [
        f"  {'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
    ]
    return FeatureRepoError(f"{where}: invalid\n" + "\n".join(lines))


def parse_store_config(text: str, where: str = "feature_store.yml") -> StoreConfig:
    try:
        return StoreConfig(**load_yaml_mapping(text, where))
    except ValidationError as exc:
        raise explain(exc, where) from None


def parse_view(stem: str, sql: str, yml: str, where: str) -> FeatureView:
    try:
        spec = ViewSpec(**load_yaml_mapping(yml, f"{where}.yml"))
    except ValidationError as exc:
        raise explain(exc, f"{where}.yml") from None
    if spec.name != stem:
        raise FeatureRepoError(f"{where}.yml: name {spec.name!r} must equal the file stem {stem!r}")
    if not sql.strip():
        raise FeatureRepoError(f"{where}.sql: empty SQL")
    return FeatureView(spec=spec, sql=sql, path=f"{where}.sql")


def build_repo(
    config: StoreConfig, population_sql: str, label_sql: str, views: list[FeatureView], root: str
) -> FeatureRepo:
    """Check the parts against each other: entity, unique feature names, no reserved names."""
    if not views:
        raise FeatureRepoError(f"{root}/views: no feature views (*.sql with a sibling *.yml)")
    reserved = {config.entity, AS_OF, config.label}
    seen: dict[str, str] = {}
    for view in views:
        if view.spec.entity != config.entity:
            raise FeatureRepoError(
                f"{view.path}: entity {view.spec.entity!r} differs from feature_store.yml entity {config.entity!r}"
            )
        for col in view.spec.columns:
            if col.name in reserved:
                raise FeatureRepoError(
                    f"{view.path}: column {col.name!r} is reserved (entity, as_of or label)"
                )
            if col.name in seen:
                raise FeatureRepoError(
                    f"{view.path}: column {col.name!r} is also produced by view {seen[col.name]!r}"
                )
            seen[col.name] = view.name
    return FeatureRepo(
        config, population_sql, label_sql, tuple(sorted(views, key=lambda v: v.name)), root
    )


def as_of_schedule(spine: SpineSpec, first_event: datetime, last_event: datetime) -> list[datetime]:
    """Training as-of dates: every ``every_days`` from start to end, both defaulted from the data.

    The default start is midnight ``warmup_days`` after the first event; the default end leaves the
    label horizon fully observed before the last event.
    """
    if spine.snapshot_at is not None:
        return [spine.snapshot_at]
    midnight = datetime(first_event.year, first_event.month, first_event.day)
    start = spine.first_as_of or midnight + timedelta(days=spine.warmup_days)
    if spine.every_months and spine.first_as_of is None and (start.day, start.hour) != (1, 0):
        start = _add_months(datetime(start.year, start.month, 1), 1)  # the first of the next month
    end = spine.last_as_of or last_event - timedelta(days=spine.horizon_days)
    if start > end:
        raise FeatureRepoError(
            f"empty as-of schedule: start {start} is after end {end} "
            f"(data spans {first_event} to {last_event}; warmup {spine.warmup_days}d, horizon {spine.horizon_days}d)"
        )
    dates, current, step = [], start, 0
    while current <= end:
        dates.append(current)
        step += 1
        if spine.every_months:
            current = _add_months(start, step * spine.every_months)
        else:
            current = start + timedelta(days=step * spine.every_days)
    return dates


def _add_months(moment: datetime, months: int) -> datetime:
    """The same day and time ``months`` later (the day clipped to the month's last day)."""
    import calendar

    year, month = divmod(moment.month - 1 + months, 12)
    year, month = moment.year + year, month + 1
    return moment.replace(
        year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1])
    )


def online_as_of(spine: SpineSpec, last_event: datetime) -> datetime:
    """The "now" for serving: midnight after the latest event, or the snapshot time.

    Event time, not arrival time: a late row arriving days after the last event must not move
    "now" into a stretch with no data yet, which would make every recent-activity feature zero.
    """
    if spine.snapshot_at is not None:
        return spine.snapshot_at
    return datetime(last_event.year, last_event.month, last_event.day) + timedelta(days=1)
