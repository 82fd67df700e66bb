"""Where things are: one settings object read from the environment (prefix ``CHURN_``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class SettingsError(ValueError):
    """An environment variable holds a value the pipeline cannot use."""


@dataclass(frozen=True)
class Settings:
    home: Path
    """Root of everything the pipeline writes (``CHURN_HOME``, default ``./.churn``)."""
    raw_dir: Path
    """Where source tables are read from (``CHURN_RAW_DIR``, default ``$CHURN_HOME/raw``)."""
    feature_repo: Path
    """Directory with ``feature_store.yml``, the spine SQL and the views (``CHURN_FEATURE_REPO``)."""
    expectations_dir: Path
    """Great Expectations suites as JSON (``CHURN_EXPECTATIONS_DIR``): ``./expectations`` for the
    built-in ``./feature_sql``, else ``<feature repo>/expectations``, so a repo carries its own suites."""
    features_dir: Path
    """Versioned training sets and online snapshots (``$CHURN_HOME/features``)."""
    tracking_uri: str
    """MLflow tracking URI (``CHURN_TRACKING_URI``, default a SQLite file under ``CHURN_HOME``)."""
    duckdb_threads: int
    duckdb_memory_limit: str

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, cwd: Path | None = None) -> Settings:
        env = os.environ if environ is None else environ
        base = Path.cwd() if cwd is None else cwd

        def path(name: str, default: Path) -> Path:
            value = env.get(name)
            return (base / value).resolve() if value else default

        home = path("CHURN_HOME", base / ".churn")
        feature_repo = path("CHURN_FEATURE_REPO", base / "feature_sql")
        own_suites = base / "expectations" if feature_repo == base / "feature_sql" else feature_repo / "expectations"
        threads = env.get("CHURN_DUCKDB_THREADS", str(os.cpu_count() or 1))
        if not threads.isdigit() or int(threads) < 1:
            raise SettingsError(f"CHURN_DUCKDB_THREADS must be a positive integer, got {threads!r}")
        return cls(
            home=home,
            raw_dir=path("CHURN_RAW_DIR", home / "raw"),
            feature_repo=feature_repo,
            expectations_dir=path("CHURN_EXPECTATIONS_DIR", own_suites),
            features_dir=path("CHURN_FEATURES_DIR", home / "features"),
            tracking_uri=env.get("CHURN_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}"),
            duckdb_threads=int(threads),
            duckdb_memory_limit=env.get("CHURN_DUCKDB_MEMORY_LIMIT", "4GB"),
        )
