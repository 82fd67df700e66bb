from __future__ import annotations

from pathlib import Path

import pytest

from churn.settings import Settings, SettingsError


def test_defaults_stay_inside_the_project(tmp_path):
    s = Settings.from_env({}, cwd=tmp_path)
    assert s.home == tmp_path / ".churn"
    assert s.raw_dir == tmp_path / ".churn" / "raw"
    assert s.features_dir == tmp_path / ".churn" / "features"
    assert s.feature_repo == tmp_path / "feature_sql"
    assert s.expectations_dir == tmp_path / "expectations"
    assert s.tracking_uri == f"sqlite:///{tmp_path / '.churn' / 'mlflow.db'}"


def test_environment_overrides(tmp_path):
    s = Settings.from_env({"CHURN_HOME": "h", "CHURN_RAW_DIR": "/data/raw", "CHURN_DUCKDB_THREADS": "1"}, cwd=tmp_path)
    assert s.home == tmp_path / "h" and s.raw_dir == Path("/data/raw") and s.duckdb_threads == 1


def test_a_custom_feature_repo_carries_its_own_suites(tmp_path):
    s = Settings.from_env({"CHURN_FEATURE_REPO": "/repos/mine"}, cwd=tmp_path)
    assert s.expectations_dir == Path("/repos/mine/expectations")


def test_bad_thread_count():
    with pytest.raises(SettingsError, match="CHURN_DUCKDB_THREADS must be a positive integer, got 'many'"):
        Settings.from_env({"CHURN_DUCKDB_THREADS": "many"})
