from __future__ import annotations

from pathlib import Path

import pytest

from churn.settings import ServiceSettings, Settings, SettingsError


def test_defaults_stay_inside_the_project(tmp_path):
    s = Settings.from_env({}, cwd=tmp_path)
    assert s.home == tmp_path / ".churn"
    assert s.raw_dir == tmp_path / ".churn" / "raw"
    assert s.features_dir == tmp_path / ".churn" / "features"
    assert s.feature_repo == tmp_path / "feature_sql"
    assert s.expectations_dir == tmp_path / "expectations"
    assert s.tracking_uri == f"sqlite:///{tmp_path / '.churn' / 'mlflow.db'}"


def test_environment_overrides(tmp_path):
    env = {
        "CHURN_HOME": "h",
        "CHURN_RAW_DIR": "/data/raw",
        "CHURN_DUCKDB_THREADS": "1",
        "CHURN_TRAIN_THREADS": "1",
    }
    s = Settings.from_env(env, cwd=tmp_path)
    assert s.home == tmp_path / "h" and s.raw_dir == Path("/data/raw") and s.duckdb_threads == 1
    assert (
        s.train_threads == 1 and Settings.from_env({}, cwd=tmp_path).train_threads is None
    )  # auto: idle cores


def test_a_custom_feature_repo_carries_its_own_suites(tmp_path):
    s = Settings.from_env({"CHURN_FEATURE_REPO": "/repos/mine"}, cwd=tmp_path)
    assert s.expectations_dir == Path("/repos/mine/expectations")


def test_bad_thread_count():
    with pytest.raises(
        SettingsError, match="CHURN_DUCKDB_THREADS must be an integer >= 1, got 'many'"
    ):
        Settings.from_env({"CHURN_DUCKDB_THREADS": "many"})
    with pytest.raises(
        SettingsError, match="CHURN_DUCKDB_THREADS must be an integer >= 1, got '0'"
    ):
        Settings.from_env({"CHURN_DUCKDB_THREADS": "0"})


def test_every_location_lives_under_home_unless_moved(tmp_path):
    s = Settings.from_env({"CHURN_HOME": "h"}, cwd=tmp_path)
    home = tmp_path / "h"
    for path in (
        s.predictions_dir,
        s.monitoring_db,
        s.alerts_log,
        s.reports_dir,
        s.reference_cache_dir,
        s.gx_dir,
        s.bentoml_home,
        s.registry_lock,
        s.registry_log,
        s.duckdb_tmp,
        s.stack_dir,
        s.mlartifacts_dir,
        s.prefect_home,
        s.simulate_dir,
        s.data_docs_index,
        s.mlflow_db,
    ):
        assert path.is_relative_to(home), path


def test_the_service_reads_the_log_directory_the_monitor_reads(tmp_path):
    env = {
        "CHURN_HOME": "h",
        "CHURN_PREDICTIONS_DIR": "/shared/log",
        "CHURN_MAX_BATCH": "7",
        "CHURN_API_TOKEN": "t",
    }
    service = ServiceSettings.from_env(env, cwd=tmp_path)
    assert (
        service.predictions_dir
        == Settings.from_env(env, cwd=tmp_path).predictions_dir
        == Path("/shared/log")
    )
    assert (service.max_batch, service.api_token, service.workers) == (7, "t", 2)
    assert (
        ServiceSettings.from_env({}, cwd=tmp_path).predictions_dir
        == tmp_path / ".churn" / "predictions"
    )
    with pytest.raises(
        SettingsError, match="CHURN_RELOAD_SECONDS must be a number >= 0, got 'soon'"
    ):
        ServiceSettings.from_env({"CHURN_RELOAD_SECONDS": "soon"})


def test_model_and_service_names_come_from_the_environment(tmp_path):
    env = {"CHURN_MODEL_NAME": "loan-default", "CHURN_SERVICE_NAME": "loans"}
    assert Settings.from_env(env, cwd=tmp_path).model_name == "loan-default"
    service = ServiceSettings.from_env(env, cwd=tmp_path)
    assert (service.model_name, service.service_name) == ("loan-default", "loans")
    assert Settings.from_env({}, cwd=tmp_path).model_name == "churn-classifier"
    with pytest.raises(SettingsError, match="CHURN_MODEL_NAME must be letters, digits"):
        Settings.from_env({"CHURN_MODEL_NAME": "my model"}, cwd=tmp_path)


def test_idle_cores_leave_the_busy_ones_out(monkeypatch):
    from churn import settings

    monkeypatch.setattr(settings, "usable_cores", lambda: 8)
    monkeypatch.setattr(settings.os, "getloadavg", lambda: (5.4, 1.0, 1.0))
    assert settings.idle_cores() == 3
    monkeypatch.setattr(settings.os, "getloadavg", lambda: (12.0, 1.0, 1.0))
    assert settings.idle_cores() == 1


def test_the_task_runner_of_feature_partitions_comes_from_the_environment(monkeypatch):
    import churn.settings

    monkeypatch.setattr(churn.settings, "usable_cores", lambda: 4)
    default = Settings.from_env({"CHURN_DUCKDB_THREADS": "2"})
    assert (default.task_runner, default.dask_address, default.task_workers) == ("thread", None, 2)
    assert Settings.from_env({"CHURN_DUCKDB_THREADS": "8"}).task_workers == 1  # never zero
    dask = Settings.from_env(
        {
            "CHURN_TASK_RUNNER": "dask",
            "CHURN_DASK_ADDRESS": "tcp://scheduler:8786",
            "CHURN_TASK_WORKERS": "3",
        }
    )
    assert (dask.task_runner, dask.dask_address, dask.task_workers) == (
        "dask",
        "tcp://scheduler:8786",
        3,
    )


def test_a_task_runner_setting_that_cannot_be_used_is_refused():
    with pytest.raises(
        SettingsError, match="CHURN_TASK_RUNNER must be one of thread, dask, got 'spark'"
    ):
        Settings.from_env({"CHURN_TASK_RUNNER": "spark"})
    with pytest.raises(
        SettingsError, match="set CHURN_TASK_RUNNER=dask to send feature partitions"
    ):
        Settings.from_env({"CHURN_DASK_ADDRESS": "tcp://scheduler:8786"})
    with pytest.raises(SettingsError, match="CHURN_TASK_WORKERS must be an integer >= 1, got '0'"):
        Settings.from_env({"CHURN_TASK_WORKERS": "0"})


def test_the_prod_profile_puts_the_prediction_log_on_the_object_store(tmp_path):
    env = {"CHURN_STORAGE": "s3://churn-data/"}
    for settings in (
        Settings.from_env(env, cwd=tmp_path),
        ServiceSettings.from_env(env, cwd=tmp_path),
    ):
        assert settings.predictions_dir == "s3://churn-data/predictions"
    assert Settings.from_env(env, cwd=tmp_path).storage == "s3://churn-data"
    # an explicit location wins, a URL is kept as a URL, a file:// URL is a directory
    explicit = {**env, "CHURN_PREDICTIONS_DIR": "s3://fleet-log/predictions/"}
    assert ServiceSettings.from_env(explicit).predictions_dir == "s3://fleet-log/predictions"
    local = {**env, "CHURN_PREDICTIONS_DIR": "file:///shared/log"}
    assert Settings.from_env(local).predictions_dir == Path("/shared/log")
    # the embedded default is untouched
    assert Settings.from_env({}, cwd=tmp_path).storage is None
    with pytest.raises(SettingsError, match="CHURN_STORAGE must be an object-store URL"):
        Settings.from_env({"CHURN_STORAGE": "/data/bucket"})


def test_the_object_store_log_flushes_by_count_or_age():
    service = ServiceSettings.from_env({})
    assert (service.log_flush_records, service.log_flush_seconds) == (1000, 2.0)
    now = ServiceSettings.from_env({"CHURN_LOG_FLUSH_SECONDS": "0"})
    assert now.log_flush_seconds == 0
    with pytest.raises(SettingsError, match="CHURN_LOG_FLUSH_RECORDS must be an integer >= 1"):
        ServiceSettings.from_env({"CHURN_LOG_FLUSH_RECORDS": "0"})


def test_a_built_bento_serves_the_names_it_was_packaged_with(tmp_path):
    """In its image no CHURN_MODEL_NAME is set (or a wrong one): the Bento's own names win."""
    built = {"model_name": "app-activity", "service_name": "app"}
    for env in ({}, {"CHURN_MODEL_NAME": "other", "CHURN_SERVICE_NAME": "other"}):
        service = ServiceSettings.from_env(env, cwd=tmp_path, built=built)
        assert (service.model_name, service.service_name) == ("app-activity", "app")
    assert ServiceSettings.from_env({}, cwd=tmp_path, built={}).model_name == "churn-classifier"
