"""Where things are: every location the pipeline reads or writes, from ``CHURN_*`` variables.

``Settings`` is the pipeline's (flows, tasks, adapters, the CLI); ``ServiceSettings`` is the
prediction service's, built from the same variable names, so the service writes its prediction log
exactly where the monitor reads it. No other module builds a path under ``CHURN_HOME``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MODEL_NAME = "churn-classifier"
"""The default name of the registered model (MLflow registry and Bento model store): ``CHURN_MODEL_NAME``."""
SERVICE_NAME = "churn"
"""The default name of the BentoML service (and of the Bento it builds): ``CHURN_SERVICE_NAME``."""
MLFLOW_DB = "mlflow.db"
Location = Path | str
"""A local directory (``Path``) or an object-store URL (``str``, e.g. ``s3://bucket/predictions``)."""
TaskRunnerKind = Literal["thread", "dask"]
TASK_RUNNERS: tuple[TaskRunnerKind, ...] = ("thread", "dask")
"""What may run the feature-partition tasks (``CHURN_TASK_RUNNER``)."""


def usable_cores() -> int:
    """The cores this process may run on (its affinity), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def idle_cores() -> int:
    """Usable cores minus the one-minute load average, at least one: more threads than free cores
    make OpenMP training wait at its barriers (measured here: 4-10x slower with every core busy)."""
    return max(1, usable_cores() - round(os.getloadavg()[0]))


def is_url(location: Location) -> bool:
    """Whether ``location`` names an object store (``s3://...``, any fsspec scheme) rather than a path."""
    return isinstance(location, str) and re.match(r"^[a-z][a-z0-9+.-]*://", location) is not None


class SettingsError(ValueError):
    """An environment variable holds a value the pipeline cannot use."""


class _Env:
    """Reads ``CHURN_*`` values: paths resolved against the working directory, numbers checked."""

    def __init__(self, environ: Mapping[str, str] | None, cwd: Path | None):
        self.env = os.environ if environ is None else environ
        self.base = Path.cwd() if cwd is None else cwd

    def path(self, name: str, default: Path) -> Path:
        value = self.env.get(name)
        return (self.base / value).resolve() if value else default

    def number(self, name: str, default: float, minimum: float = 0, integer: bool = True) -> float:
        raw = self.env.get(name)
        if raw is None or raw == "":
            return default
        kind = "an integer" if integer else "a number"
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise SettingsError(f"{name} must be {kind} >= {minimum:g}, got {raw!r}")
        return value

    def name(self, variable: str, default: str) -> str:
        """A model or service name: letters, digits, '-', '_' and '.' (what MLflow and BentoML accept)."""
        value = self.env.get(variable) or default
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
            raise SettingsError(
                f"{variable} must be letters, digits, '-', '_' or '.', got {value!r}"
            )
        return value

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.env.get(name) or default
        if value not in allowed:
            raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        return value

    def home(self) -> Path:
        return self.path("CHURN_HOME", self.base / ".churn")

    def storage(self) -> str | None:
        """``CHURN_STORAGE``: the object-store root of the prod profile (``s3://bucket[/prefix]``)."""
        value = (self.env.get("CHURN_STORAGE") or "").rstrip("/")
        if value and not is_url(value):
            raise SettingsError(
                f"CHURN_STORAGE must be an object-store URL like s3://bucket, got {value!r}"
            )
        return value or None

    def location(self, name: str, default: Location) -> Location:
        """A directory or an object-store URL: a value with a scheme (``s3://``) is kept as it is."""
        value = self.env.get(name)
        if value and value.startswith("file://"):
            return Path(value.removeprefix("file://"))
        if value and is_url(value):
            return value.rstrip("/")
        if value:
            return (self.base / value).resolve()
        return default

    def under_storage(self, name: str, home: Path) -> Location:
        """``<CHURN_STORAGE>/<name>`` with an object store, else ``$CHURN_HOME/<name>``."""
        storage = self.storage()
        return f"{storage}/{name}" if storage else home / name

    def predictions_dir(self, home: Path) -> Location:
        return self.location("CHURN_PREDICTIONS_DIR", self.under_storage("predictions", home))


@dataclass(frozen=True)
class Settings:
    home: Path
    """Root of everything the pipeline writes (``CHURN_HOME``, default ``./.churn``)."""
    raw_dir: Location
    """Where source tables are read from (``CHURN_RAW_DIR``, default ``$CHURN_HOME/raw``, or
    ``<CHURN_STORAGE>/raw`` on an object store)."""
    feature_repo: Path
    """Directory with ``feature_store.yml``, the spine SQL and the views (``CHURN_FEATURE_REPO``)."""
    expectations_dir: Path
    """Great Expectations suites as JSON (``CHURN_EXPECTATIONS_DIR``): ``./expectations`` for the
    built-in ``./feature_sql``, else ``<feature repo>/expectations``, so a repo carries its own."""
    features_dir: Location
    """Versioned training sets and online snapshots (``CHURN_FEATURES_DIR``, default
    ``$CHURN_HOME/features``, or ``<CHURN_STORAGE>/features`` on an object store)."""
    predictions_dir: Location
    """The service's prediction log, read by the monitor (``CHURN_PREDICTIONS_DIR``): a directory, or
    an object-store URL (``s3://bucket/predictions``; the default under ``CHURN_STORAGE``)."""
    tracking_uri: str
    """MLflow tracking URI (``CHURN_TRACKING_URI``, default a SQLite file under ``CHURN_HOME``)."""
    model_name: str
    """The registered model every flow trains, promotes, packages and monitors (``CHURN_MODEL_NAME``)."""
    duckdb_threads: int
    duckdb_memory_limit: str
    environments_dir: Path
    """Deployment environments, one ``<name>.yml`` each (``CHURN_ENVIRONMENTS_DIR``, default
    ``./deploy/environments``)."""
    environment: str
    """The environment this process runs in (``CHURN_ENV``, default ``dev``): runs are tagged with it."""
    train_threads: int | None
    """Math threads (OpenMP, BLAS) while fitting (``CHURN_TRAIN_THREADS``); unset: the cores that are
    idle when the fit starts (see ``idle_cores``). The latency gate always uses one, as served."""
    task_runner: TaskRunnerKind = "thread"
    """What runs the feature-partition tasks (``CHURN_TASK_RUNNER``): ``thread`` (Prefect's thread
    pool, the default) or ``dask`` (Prefect's DaskTaskRunner)."""
    dask_address: str | None = None
    """The Dask scheduler to send partition tasks to (``CHURN_DASK_ADDRESS``, e.g.
    ``tcp://scheduler:8786``); unset with ``dask``: a local cluster of ``task_workers`` processes."""
    task_workers: int = 1
    """Partition tasks that run at once on this machine (``CHURN_TASK_WORKERS``): threads of the
    pool, or processes of the local Dask cluster. Each opens its own DuckDB connection with
    ``duckdb_threads`` threads and ``duckdb_memory_limit``, so the build's peak is about
    ``task_workers`` x that limit. Default: usable cores // ``duckdb_threads`` (at least one)."""
    storage: str | None = None
    """The object store of the prod profile (``CHURN_STORAGE``, e.g. ``s3://churn-data``): raw data,
    feature sets and the prediction log go to ``<storage>/raw``, ``/features`` and ``/predictions``
    (each packaged Bento is exported to ``<storage>/bentos``)
    unless ``CHURN_RAW_DIR``, ``CHURN_FEATURES_DIR`` or ``CHURN_PREDICTIONS_DIR`` say otherwise.
    Credentials and endpoint come from the standard ``AWS_*`` variables (``AWS_ENDPOINT_URL`` for an
    S3-compatible store), read by s3fs and boto3 themselves."""
    pg_bin: Path | None = None
    """PostgreSQL's server binaries for ``make up PROFILE=prod`` (``CHURN_PG_BIN``; unset: the
    newest ``/usr/lib/postgresql/*/bin``, else ``initdb`` on PATH)."""
    pg_os_user: str = "postgres"
    """The OS user the prod profile's PostgreSQL runs as when started by root
    (``CHURN_PG_OS_USER``; PostgreSQL refuses to run as root)."""

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> Settings:
        env = _Env(environ, cwd)
        home = env.home()
        duckdb_threads = int(env.number("CHURN_DUCKDB_THREADS", os.cpu_count() or 1, minimum=1))
        runner = env.choice("CHURN_TASK_RUNNER", "thread", TASK_RUNNERS)
        dask_address = env.env.get("CHURN_DASK_ADDRESS") or None
        if dask_address and runner != "dask":
            raise SettingsError(
                f"CHURN_DASK_ADDRESS is {dask_address!r} but CHURN_TASK_RUNNER is {runner!r}: "
                "set CHURN_TASK_RUNNER=dask to send feature partitions there, or unset the address"
            )
        feature_repo = env.path("CHURN_FEATURE_REPO", env.base / "feature_sql")
        builtin = feature_repo == env.base / "feature_sql"
        own_suites = env.base / "expectations" if builtin else feature_repo / "expectations"
        return cls(
            home=home,
            raw_dir=env.location("CHURN_RAW_DIR", env.under_storage("raw", home)),
            feature_repo=feature_repo,
            expectations_dir=env.path("CHURN_EXPECTATIONS_DIR", own_suites),
            features_dir=env.location("CHURN_FEATURES_DIR", env.under_storage("features", home)),
            predictions_dir=env.predictions_dir(home),
            tracking_uri=env.env.get("CHURN_TRACKING_URI") or f"sqlite:///{home / MLFLOW_DB}",
            model_name=env.name("CHURN_MODEL_NAME", MODEL_NAME),
            duckdb_threads=duckdb_threads,
            duckdb_memory_limit=env.env.get("CHURN_DUCKDB_MEMORY_LIMIT", "4GB"),
            environments_dir=env.path(
                "CHURN_ENVIRONMENTS_DIR", env.base / "deploy" / "environments"
            ),
            environment=env.name("CHURN_ENV", "dev"),
            train_threads=int(env.number("CHURN_TRAIN_THREADS", 0, minimum=1)) or None,
            task_runner="dask" if runner == "dask" else "thread",
            dask_address=dask_address,
            task_workers=int(
                env.number(
                    "CHURN_TASK_WORKERS", max(1, usable_cores() // duckdb_threads), minimum=1
                )
            ),
            storage=env.storage(),
            pg_bin=env.path("CHURN_PG_BIN", Path()) if env.env.get("CHURN_PG_BIN") else None,
            pg_os_user=env.env.get("CHURN_PG_OS_USER") or "postgres",
        )

    # Everything below lives under CHURN_HOME and has no variable of its own.

    @property
    def mlflow_db(self) -> Path:
        """The embedded MLflow store (the default tracking URI, and what `make up`'s MLflow server serves)."""
        return self.home / MLFLOW_DB

    @property
    def bento_exports(self) -> str | None:
        """Where the package flow exports each Bento (``<CHURN_STORAGE>/bentos``), for replicas and
        image builds on other machines to ``bentoml import``; None without an object store."""
        return f"{self.storage}/bentos" if self.storage else None

    @property
    def feature_set_cache(self) -> Path:
        """Local copies of feature sets published to an object store (one directory per version),
        and where a build on an object store stages its files before uploading them."""
        return self.home / "features-cache"

    @property
    def duckdb_tmp(self) -> Path:
        """Where DuckDB spills when a query outgrows its memory limit."""
        return self.home / "duckdb_tmp"

    @property
    def gx_dir(self) -> Path:
        """The file-backed Great Expectations context (suites, results, Data Docs)."""
        return self.home / "gx"

    @property
    def data_docs_index(self) -> Path:
        return self.gx_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"

    @property
    def mlartifacts_dir(self) -> Path:
        """Artifact root of experiments in the embedded SQLite tracking store."""
        return self.home / "mlartifacts"

    @property
    def registry_lock(self) -> Path:
        """Alias moves in the registry hold this file lock."""
        return self.home / "registry.lock"

    @property
    def registry_log(self) -> Path:
        """Every alias move (promotion, rollback), one JSON line each."""
        return self.home / "registry_events.jsonl"

    @property
    def bentoml_home(self) -> Path:
        """BENTOML_HOME: the Bento model store and built Bentos."""
        return self.home / "bentoml"

    @property
    def monitoring_dir(self) -> Path:
        return self.home / "monitoring"

    @property
    def monitoring_db(self) -> Path:
        """DuckDB store of monitor windows, feature drift, alerts and retrain decisions."""
        return self.monitoring_dir / "monitoring.duckdb"

    @property
    def alerts_log(self) -> Path:
        """Every alert change, one JSON line each, whatever the notification block did."""
        return self.monitoring_dir / "alerts.jsonl"

    @property
    def reports_dir(self) -> Path:
        """Evidently HTML reports, one per window."""
        return self.monitoring_dir / "reports"

    @property
    def reference_cache_dir(self) -> Path:
        """Champions' reference samples, downloaded once per model version."""
        return self.monitoring_dir / "reference"

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    @property
    def stack_dir(self) -> Path:
        """Pid files, ports and logs of the local stack (make up / down)."""
        return self.home / "stack"

    @property
    def screenshots_dir(self) -> Path:
        """PNGs of every UI, made by ``make screenshots`` (``churn screenshots``)."""
        return self.home / "screenshots"

    @property
    def bench_dir(self) -> Path:
        """Worlds and scratch stores of the benchmarks."""
        return self.home / "bench"

    @property
    def deploy_dir(self) -> Path:
        """Rollout state per environment: the proxy's config, live container, rollout log."""
        return self.home / "deploy"

    @property
    def container_dir(self) -> Path:
        """The base image's root filesystem and the wheelhouse of ``churn container base``."""
        return self.home / "container"

    @property
    def simulate_dir(self) -> Path:
        """Scratch space of ``churn simulate`` (the combined history + drift world)."""
        return self.home / "simulate"


@dataclass(frozen=True)
class ServiceSettings:
    """What the prediction service reads from its environment (no feature repo, no MLflow)."""

    predictions_dir: Location
    """``CHURN_PREDICTIONS_DIR``, default ``$CHURN_HOME/predictions`` (``<CHURN_STORAGE>/predictions``
    with an object store): the monitor reads it there."""
    model_name: str
    """The Bento model served: the one the package flow stored under the same ``CHURN_MODEL_NAME``."""
    service_name: str
    max_batch: int
    max_body_bytes: int
    reload_seconds: float
    workers: int
    access_log: bool
    api_token: str | None
    log_flush_records: int = 1000
    """Object-store log only: a worker writes its buffered records as one new object once it holds
    this many (``CHURN_LOG_FLUSH_RECORDS``) ..."""
    log_flush_seconds: float = 2.0
    """... or once the oldest has waited this long (``CHURN_LOG_FLUSH_SECONDS``). 0: every request's
    records are written before its answer (one object per request)."""

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        built: Mapping[str, str] | None = None,
    ) -> ServiceSettings:
        """``built``: the names a built Bento carries (its arguments, set by the package step);
        they win over the environment, since the Bento holds only that model: its image serves
        what it was built with, whatever the container's environment says."""
        env = _Env(environ, cwd)
        built = built or {}
        return cls(
            predictions_dir=env.predictions_dir(env.home()),
            model_name=built.get("model_name") or env.name("CHURN_MODEL_NAME", MODEL_NAME),
            service_name=built.get("service_name") or env.name("CHURN_SERVICE_NAME", SERVICE_NAME),
            max_batch=int(env.number("CHURN_MAX_BATCH", 5000, minimum=1)),
            max_body_bytes=int(env.number("CHURN_MAX_BODY_BYTES", 4 * 1024 * 1024, minimum=1)),
            reload_seconds=env.number("CHURN_RELOAD_SECONDS", 10.0, integer=False),
            workers=int(env.number("CHURN_SERVICE_WORKERS", 2, minimum=1)),
            access_log=env.env.get("CHURN_ACCESS_LOG", "true").lower() != "false",
            api_token=env.env.get("CHURN_API_TOKEN") or None,
            log_flush_records=int(env.number("CHURN_LOG_FLUSH_RECORDS", 1000, minimum=1)),
            log_flush_seconds=env.number("CHURN_LOG_FLUSH_SECONDS", 2.0, integer=False),
        )
