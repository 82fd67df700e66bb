"""The train flow against a real Prefect server and a real MLflow SQLite store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churn.params import LogisticRegressionParams
from tests.fixtures.toy_data import SNAPSHOT_REPO, STREAMING_REPO, write_snapshot, write_streaming
from tests.helpers import FAST

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture(scope="module")
def trained(small_world, tmp_path_factory):
    """One feature set and one training run shared by the read-only checks below."""
    home = tmp_path_factory.mktemp("train-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHURN_HOME", str(home))
        mp.setenv("CHURN_RAW_DIR", str(small_world))
        mp.delenv("CHURN_FEATURE_REPO", raising=False)
        mp.delenv("CHURN_TRACKING_URI", raising=False)
        from churn.settings import Settings
        from flows.train import train

        result = train(FAST)  # builds the missing feature set first
        yield Settings.from_env(), result


def client_for(settings):
    from adapters.mlflow_store import connect

    return connect(settings)


def test_run_logs_params_metrics_datasets_artifacts_and_tags(trained):
    settings, result = trained
    client = client_for(settings)
    run = client.get_run(result.run.run_id)
    assert run.info.status == "FINISHED"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    for key in (
        "estimator.kind",
        "estimator.max_iter",
        "train_size",
        "test_size",
        "feature_count",
        "positive_rate",
        "first_as_of",
        "last_as_of",
        "decision_threshold",
        "split_strategy",
    ):
        assert key in params, key
    assert params["split_strategy"] == "time" and params["estimator.max_iter"] == "60"
    assert {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "auc_roc",
        "pr_auc",
        "log_loss",
        "brier",
    } <= set(metrics)
    assert 0.5 < metrics["auc_roc"] <= 1.0
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"train", "valid", "test"} and all(
        len(d.dataset.digest) == 16 for d in inputs.values()
    )
    assert {t.value for d in inputs.values() for t in d.tags if t.key == "mlflow.data.context"} == {
        "training",
        "validation",
        "testing",
    }
    assert tags["git_commit"] and len(tags["feature_set.training_sha256"]) == 64
    assert "sql_hash.customer_profile" in tags and "sql_hash.label" in tags
    files = {f.path for f in client.list_artifacts(result.run.run_id, "evaluation")}
    for name in (
        "feature_importance.csv",
        "feature_importance.png",
        "evaluation_curves.png",
        "feature_set_manifest.json",
    ):
        assert f"evaluation/{name}" in files


def test_the_ui_says_what_each_run_and_version_is(trained):
    """Descriptions (what, which data, the gate verdict), the flow as the run's source, test metrics
    against the test dataset and the logged model, experiments that open on their runs."""
    from adapters import mlflow_store

    settings, result = trained
    client = client_for(settings)
    run = client.get_run(result.run.run_id)
    tags = run.data.tags
    assert tags["mlflow.source.name"] == "flows/train.py:train"
    assert tags["mlflow.source.type"] == "JOB"
    version_set = tags["feature_set.version"]
    note = tags["mlflow.note.content"]
    assert f"feature set `{version_set}`" in note and "hist_gradient_boosting" in note
    assert f"- gates: **{result.decision}**" in note and "not run yet" not in note
    version = client.get_model_version("churn-classifier", result.version)
    assert f"feature set `{version_set}`" in version.description
    assert f"- gates: **{result.decision}**" in version.description
    assert client.get_registered_model("churn-classifier").description == (
        mlflow_store.REGISTERED_MODEL_NOTE
    )
    test_input = next(d.dataset for d in run.inputs.dataset_inputs if d.dataset.name == "test")
    model_id = result.run.model_uri.removeprefix("models:/")
    by_key = {m.key: m for m in client.get_logged_model(model_id).metrics}
    assert by_key["auc_roc"].value == pytest.approx(result.metrics["auc_roc"])
    assert (by_key["auc_roc"].dataset_name, by_key["auc_roc"].dataset_digest) == (
        "test",
        test_input.digest,
    )
    assert by_key["valid_auc_roc"].dataset_name == "valid"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    default = client.get_experiment("0")
    assert default.artifact_location.startswith(settings.mlartifacts_dir.resolve().as_uri())


def test_challenger_loads_from_the_registry_and_scores_a_dataframe(trained):
    import mlflow

    from adapters.feature_sets import TRAINING_SET, latest

    settings, result = trained
    client = client_for(settings)
    version = client.get_model_version_by_alias("churn-classifier", "challenger")
    assert str(version.version) == result.version and version.run_id == result.run.run_id
    assert "metric.auc_roc" in version.tags and version.tags["feature_set.version"]

    model = mlflow.sklearn.load_model("models:/churn-classifier@challenger")
    feature_set = latest(settings.features_dir)
    names = [f.name for f in feature_set.manifest.features]
    rows = pd.read_parquet(feature_set.path / TRAINING_SET).head(300)[names]
    proba = model.predict_proba(rows)[:, 1]
    assert ((proba >= result.decision_threshold).astype(int) == model.predict(rows)).all()

    info = mlflow.models.get_model_info("models:/churn-classifier@challenger")
    signed = [c.name for c in info.signature.inputs.inputs]
    assert sorted(signed) == sorted(names) and info.metadata["feature_names"] == signed
    assert info.metadata["decision_threshold"] == pytest.approx(result.decision_threshold)
    assert info.flavors["sklearn"]["serialization_format"] == "skops"


def test_same_data_same_seed_same_metrics(trained):
    from flows.train import train

    settings, first = trained
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHURN_HOME", str(settings.home))
        mp.setenv("CHURN_RAW_DIR", str(settings.raw_dir))
        second = train(FAST)
    assert second.metrics == first.metrics and second.decision_threshold == first.decision_threshold
    assert int(second.version) == int(first.version) + 1


def _runs_and_models(settings):
    client = client_for(settings)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    return runs, client.search_registered_models()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.iloc[0:0], "the training set is empty"),
        (lambda d: d.assign(label=0), "single class"),
        (lambda d: d.assign(tenure_days=np.nan), "entirely null: \\['tenure_days'\\]"),
        (lambda d: d.assign(label=d["label"].replace({1: 3})), "must hold only 0 and 1; found 3"),
    ],
)
def test_bad_training_sets_fail_clearly_and_leave_nothing(
    trained, tmp_path, monkeypatch, change, message
):
    from adapters import feature_sets
    from flows.train import train

    settings, _ = trained
    source = feature_sets.latest(settings.features_dir)
    monkeypatch.setenv("CHURN_HOME", str(tmp_path / "home"))
    features_dir = tmp_path / "home" / "features"
    version, staging = feature_sets.new_staging(features_dir)
    change(pd.read_parquet(source.path / feature_sets.TRAINING_SET)).to_parquet(
        staging / feature_sets.TRAINING_SET
    )
    feature_sets.publish(
        features_dir, staging, source.manifest.model_copy(update={"version": version})
    )
    from churn.settings import Settings

    with pytest.raises(Exception, match=message):
        train(FAST)
    runs, models = _runs_and_models(Settings.from_env())
    assert [r for r in runs if r.info.status == "FINISHED"] == [] and models == []


def test_unreachable_tracking_uri_fails_before_any_work(tmp_path, monkeypatch):
    from flows.train import train
    from ops.stack import free_port

    monkeypatch.setenv("CHURN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CHURN_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(
        Exception, match="cannot reach the MLflow tracking store at http://127.0.0.1"
    ):
        train(FAST)
    assert not (tmp_path / "home" / "features").exists()


def test_search_logs_nested_trials_and_keeps_the_best(trained, tmp_path, monkeypatch):
    from flows.train import train

    settings, _ = trained
    monkeypatch.setenv("CHURN_HOME", str(settings.home))
    monkeypatch.setenv("CHURN_RAW_DIR", str(settings.raw_dir))
    params = FAST.model_copy(
        update={"search": True, "search_trials": 2, "experiment": "churn-search"}
    )
    result = train(params)
    client = client_for(settings)
    children = client.search_runs(
        [result.run.experiment_id], f"tags.mlflow.parentRunId = '{result.run.run_id}'"
    )
    assert len(children) == 3  # the default estimator plus two sampled candidates
    best = max(c.data.metrics["valid_auc_roc"] for c in children)
    assert client.get_run(result.run.run_id).data.metrics["valid_auc_roc"] == pytest.approx(best)


@pytest.mark.parametrize("shape", ["streaming", "snapshot"])
def test_trains_on_bring_your_own_data_without_code_changes(tmp_path, monkeypatch, shape):
    from flows.train import train

    repo, write = {
        "streaming": (STREAMING_REPO, write_streaming),
        "snapshot": (SNAPSHOT_REPO, write_snapshot),
    }[shape]
    raw = write(tmp_path / "raw", 1200) if shape == "snapshot" else write(tmp_path / "raw", 400)
    monkeypatch.setenv("CHURN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CHURN_RAW_DIR", str(raw))
    monkeypatch.setenv("CHURN_FEATURE_REPO", str(repo))
    params = (
        FAST
        if shape == "snapshot"
        else FAST.model_copy(update={"estimator": LogisticRegressionParams()})
    )
    result = train(params)
    from churn.settings import Settings

    run = client_for(Settings.from_env()).get_run(result.run.run_id)
    expected = "stratified_random" if shape == "snapshot" else "time"
    assert run.data.params["split_strategy"] == expected
    assert result.version == "1"


def test_a_partitioned_feature_set_trains_the_same_model(trained):
    """Training, its data checks, the MLflow datasets and the drift gate read a set built in 4 hash
    partitions as they read the single build: same data, same seed, same metrics. Last in this
    module: it publishes a new latest feature set and champion in the shared home."""
    from churn.params import FeaturesParams
    from flows.features import features
    from flows.train import train

    settings, first = trained
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHURN_HOME", str(settings.home))
        mp.setenv("CHURN_RAW_DIR", str(settings.raw_dir))
        partitioned = features(FeaturesParams(partitions=4))
        second = train(FAST)
    assert partitioned.manifest.training_set.partitions == 4
    client = client_for(settings)
    assert client.get_run(second.run.run_id).data.tags["feature_set.version"] == partitioned.version
    assert second.metrics == pytest.approx(first.metrics, rel=1e-9)
    assert second.decision_threshold == pytest.approx(first.decision_threshold, rel=1e-9)

    # the package step puts the partitioned snapshot into the Bento as the one file it serves from
    from flows.package import package
    from tests.helpers import assert_same_table

    single = client.get_run(first.run.run_id).data.tags["feature_set.version"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHURN_HOME", str(settings.home))
        mp.setenv("CHURN_RAW_DIR", str(settings.raw_dir))
        packaged = package(settings.model_name)
    import bentoml

    served = Path(bentoml.models.get(packaged.tag).path) / "online_snapshot.parquet"
    expected = settings.features_dir / "runs" / single / "online_snapshot.parquet"
    assert_same_table(pd.read_parquet(served), pd.read_parquet(expected))
