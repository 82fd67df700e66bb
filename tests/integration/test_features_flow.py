"""The features flow on a real Prefect server: publish, manifest, failure safety, bring-your-own-data."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from adapters.feature_sets import ONLINE_SNAPSHOT, TRAINING_SET, latest
from churn.online import OnlineFeatures
from tests.fixtures.toy_data import SNAPSHOT_REPO, STREAMING_REPO, write_snapshot, write_streaming

pytestmark = pytest.mark.usefixtures("prefect_server")


def run_flow(**params):
    from churn.params import FeaturesParams
    from flows.features import features

    return features(FeaturesParams(**params))


def test_flow_publishes_a_versioned_feature_set_with_manifest(churn_env):
    result = run_flow()
    published = latest(churn_env.features_dir)
    path = published.path
    assert path == result.path and published.manifest == result.manifest
    manifest = json.loads((path / "manifest.json").read_text())  # as a user reads it
    training = pd.read_parquet(path / TRAINING_SET)
    online = pd.read_parquet(path / ONLINE_SNAPSHOT)

    assert manifest["training_set"]["rows"] == len(training) > 1000
    assert manifest["training_set"]["positives"] == training["label"].sum() > 0
    assert manifest["online_snapshot"]["rows"] == len(online) > 100
    assert (manifest["entity"], manifest["entity_dtype"]) == ("customer_id", "int64")
    assert set(manifest["sql_hashes"]) == {
        "population",
        "label",
        "customer_profile",
        "customer_engagement_30d",
        "customer_transactions_90d",
        "customer_support_90d",
    }
    for source in ("customers", "transactions", "events", "tickets", "cancellations"):
        (digest,) = manifest["sources"][source]["files"].values()
        assert len(digest) == 64
    assert training["as_of"].nunique() == manifest["training_set"]["as_of_count"]
    assert online["as_of"].nunique() == 1 and online["customer_id"].is_unique
    feature_names = [f["name"] for f in manifest["features"]]
    assert len(feature_names) == 23

    lookup = OnlineFeatures(online, "customer_id", feature_names)
    some_id = int(online["customer_id"].iloc[0])
    assert lookup.get(some_id)["plan"] == online["plan"].iloc[0]

    # every validation result is named by what was validated and this flow run
    from adapters.validation import VALIDATIONS_STORE

    stored = (churn_env.gx_dir / "gx" / VALIDATIONS_STORE).rglob("*.json")
    full = {json.loads(p.read_text())["meta"]["run_id"]["run_name"] for p in stored}
    assert all(re.search(r"\.flow-run-[0-9a-f]{8}$", n) for n in full), full
    names = {n.split(".flow-run-")[0] for n in full}
    version = published.version
    assert {f"feature-set-{version}"} < names and len(names) == 2
    assert next(n for n in names if n != f"feature-set-{version}").startswith("sources-")


def test_failed_run_leaves_the_last_good_feature_set(churn_env, tmp_path, monkeypatch):
    from tests.helpers import copy_repo

    run_flow()
    pointer = (churn_env.features_dir / "latest.json").read_text()
    before = sorted(p.name for p in (churn_env.features_dir / "runs").iterdir())

    repo = copy_repo(tmp_path)
    view = repo / "views" / "customer_profile.sql"
    view.write_text(
        view.read_text().replace(
            "select * from final", "select * from final union all select * from final"
        )
    )
    monkeypatch.setenv("CHURN_FEATURE_REPO", str(repo))
    with pytest.raises(Exception, match="duplicate"):
        run_flow()

    assert (churn_env.features_dir / "latest.json").read_text() == pointer
    assert sorted(p.name for p in (churn_env.features_dir / "runs").iterdir()) == before


def test_flow_params_are_validated():
    from churn.params import FeaturesParams

    with pytest.raises(ValueError, match="every_days\n  Input should be greater than 0"):
        FeaturesParams(every_days=0)
    with pytest.raises(
        ValueError, match="first_as_of 2025-05-01 00:00:00 is after last_as_of 2025-01-01"
    ):
        FeaturesParams(first_as_of="2025-05-01", last_as_of="2025-01-01")


def test_bring_your_own_event_history(tmp_path, monkeypatch):
    raw = write_streaming(tmp_path / "raw")
    monkeypatch.setenv("CHURN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CHURN_RAW_DIR", str(raw))
    monkeypatch.setenv("CHURN_FEATURE_REPO", str(STREAMING_REPO))
    result = run_flow()
    training = pd.read_parquet(result.path / TRAINING_SET)
    online = pd.read_parquet(result.path / ONLINE_SNAPSHOT)
    assert list(training.columns) == [
        "account_ref",
        "as_of",
        "closed_soon",
        "plays_14d",
        "minutes_14d",
        "tier",
    ]
    assert training["as_of"].nunique() > 5 and training["closed_soon"].isin([0, 1]).all()
    assert 0 < training["closed_soon"].sum() < len(training)
    assert training["account_ref"].str.startswith("acct-").all()
    assert len(online) > 0 and online["as_of"].nunique() == 1


def test_bring_your_own_snapshot_table(tmp_path, monkeypatch):
    raw = write_snapshot(tmp_path / "raw")
    monkeypatch.setenv("CHURN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CHURN_RAW_DIR", str(raw))
    monkeypatch.setenv("CHURN_FEATURE_REPO", str(SNAPSHOT_REPO))
    result = run_flow()
    source = pd.read_parquet(raw / "telco_snapshot.parquet").sort_values(
        "subscriber", ignore_index=True
    )
    training = pd.read_parquet(result.path / TRAINING_SET).sort_values(
        "subscriber", ignore_index=True
    )
    assert len(training) == len(source)
    assert (training["as_of"] == pd.Timestamp("2024-06-30")).all()
    pd.testing.assert_series_equal(training["churned"], source["churned"], check_dtype=False)
    assert training["monthly_charges"].isna().sum() == source["monthly_charges"].isna().sum() > 0
    manifest = json.loads(
        (tmp_path / "home" / "features" / "runs" / result.version / "manifest.json").read_text()
    )
    assert manifest["online_snapshot"]["rows"] == len(source)


def test_same_sources_and_sql_rebuild_the_identical_training_set(churn_env):
    """The manifest pins everything that defines the set: rebuilding gives byte-identical files."""
    from adapters.feature_engine import file_digest

    first, second = run_flow(), run_flow()
    assert first.version != second.version
    for name in (TRAINING_SET, ONLINE_SNAPSHOT):
        assert file_digest(str(first.path / name)) == file_digest(str(second.path / name))
    keys = ("sql_hashes", "sources", "training_set", "online_snapshot", "features")
    assert {k: getattr(first.manifest, k) for k in keys} == {
        k: getattr(second.manifest, k) for k in keys
    }


def single_build(settings, tmp_path) -> dict[str, pd.DataFrame]:
    """The single-query build of both tables (one DuckDB query each, no Prefect), on the as-of
    dates and snapshot time the flow chooses by default."""
    from adapters import feature_engine as engine
    from churn.featurestore import as_of_schedule, online_as_of

    repo = engine.load_feature_repo(settings.feature_repo)
    bounds = engine.check_sources(settings, repo).bounds
    dates = {
        TRAINING_SET: as_of_schedule(repo.config.spine, bounds.covered_from, bounds.covered_to),
        ONLINE_SNAPSHOT: [online_as_of(repo.config.spine, bounds.covered_to)],
    }
    tables = {}
    for name, as_of_dates in dates.items():
        out = tmp_path / f"single-{name}"
        engine.write_features(settings, repo, as_of_dates, name == TRAINING_SET, out)
        tables[name] = pd.read_parquet(out)
    return tables


def assert_publishes(settings, expected: dict[str, pd.DataFrame], result, n: int, tmp_path) -> None:
    """A set built in ``n`` partitions: its parts, counts, validation stamps and every reader's view
    (feature_sets.read_table, the train flow's load, the Bento's snapshot file) are ``expected``."""
    from adapters import validation
    from adapters.feature_engine import load_feature_repo
    from adapters.feature_sets import copy_table, read_table, table_files
    from churn import training
    from tasks.training import load_training_data
    from tests.helpers import assert_same_table

    manifest, entity = result.manifest, result.manifest.entity
    train, online = expected[TRAINING_SET], expected[ONLINE_SNAPSHOT]
    assert (manifest.training_set.partitions, manifest.online_snapshot.partitions) == (n, n)
    assert (manifest.training_set.rows, manifest.training_set.positives) == (
        len(train),
        train[manifest.label].sum(),
    )
    assert manifest.online_snapshot.rows == len(online)
    for name, frame in expected.items():
        assert len(table_files(result.path / name)) == n
        assert_same_table(read_table(result.path / name, entity), frame)
    # the train flow's reader (of the latest set, this one) and the validation stamp it trusts
    data = load_training_data(settings)
    assert data.feature_set.version == result.version
    schema = training.feature_schema(manifest.features)
    assert_same_table(data.frame, training.model_frame(train, schema))
    repo = load_feature_repo(settings.feature_repo)
    suites, _ = validation.load_suites(repo, settings.expectations_dir)
    for suite, name in (("training_set", TRAINING_SET), ("online_snapshot", ONLINE_SNAPSHOT)):
        stamp = validation.validation_stamp(suites[suite], result.path / name)
        assert manifest.validation.suites[suite].stamp == stamp
    # the package step's copy for serving: one parquet file, read by the service with pandas
    packaged = tmp_path / f"snapshot-{n}.parquet"
    copy_table(settings, result.path / ONLINE_SNAPSHOT, packaged, entity)
    assert_same_table(pd.read_parquet(packaged), online)


def test_partitioned_builds_publish_what_the_single_build_does(churn_env, tmp_path):
    """N = 1 is the single-query build (one file per table, as before); 4 partitions publish the
    same through the flow (4, 8 and 16 read back identical at the SQL layer: tests/sql/test_partitions.py)."""
    single = run_flow()
    assert (single.path / TRAINING_SET).is_file() and (single.path / ONLINE_SNAPSHOT).is_file()
    expected = {
        name: pd.read_parquet(single.path / name) for name in (TRAINING_SET, ONLINE_SNAPSHOT)
    }
    assert_publishes(churn_env, single_build(churn_env, tmp_path), single, 1, tmp_path)
    result = run_flow(partitions=4)
    assert_publishes(churn_env, expected, result, 4, tmp_path)
    for part in ("training_set", "online_snapshot"):
        got, want = getattr(result.manifest, part), getattr(single.manifest, part)
        assert got.model_dump(exclude={"partitions"}) == want.model_dump(exclude={"partitions"})


def test_partitions_of_string_ids_with_more_partitions_than_entities(tmp_path, monkeypatch):
    """A repo with string entity ids (app_repo) and 12 users: 16 partitions leave some empty."""
    from adapters.feature_sets import table_files
    from churn.settings import Settings
    from tests.fixtures.real_shaped import APP_REPO, write_app

    raw = write_app(tmp_path / "raw", users=12, seed=3)
    monkeypatch.setenv("CHURN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CHURN_RAW_DIR", str(raw))
    monkeypatch.setenv("CHURN_FEATURE_REPO", str(APP_REPO))
    monkeypatch.setenv("CHURN_DUCKDB_MEMORY_LIMIT", "1GB")
    settings = Settings.from_env()
    expected = single_build(settings, tmp_path)
    assert expected[TRAINING_SET]["user_key"].str.startswith("u-").all()
    for n in (4, 16):
        result = run_flow(partitions=n)
        assert_publishes(settings, expected, result, n, tmp_path)
    sizes = [len(pd.read_parquet(p)) for p in table_files(result.path / TRAINING_SET)]
    assert 0 in sizes and sum(sizes) == len(expected[TRAINING_SET])


def test_partitions_come_from_the_repos_pipeline_yml(churn_env, tmp_path, monkeypatch):
    from churn.params import FeaturesParams
    from churn.settings import Settings
    from tasks.features import resolve_params
    from tests.helpers import copy_repo

    repo = copy_repo(tmp_path)
    (repo / "pipeline.yml").write_text("features:\n  partitions: 3\n")
    monkeypatch.setenv("CHURN_FEATURE_REPO", str(repo))
    settings = Settings.from_env()
    assert resolve_params(settings, FeaturesParams()).partitions == 3
    assert resolve_params(settings, FeaturesParams(partitions=2)).partitions == 2  # explicit wins


def test_the_partition_task_runner_follows_the_settings():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from churn.settings import Settings
    from flows.feature_partitions import partition_runner

    threads = partition_runner(Settings.from_env({"CHURN_TASK_WORKERS": "3"}))
    assert isinstance(threads, ThreadPoolTaskRunner) and threads._max_workers == 3
    local = partition_runner(Settings.from_env({"CHURN_TASK_RUNNER": "dask"}))
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_kwargs["processes"] and local.cluster_kwargs["host"] == "127.0.0.1"
    remote = partition_runner(
        Settings.from_env({"CHURN_TASK_RUNNER": "dask", "CHURN_DASK_ADDRESS": "tcp://sched:8786"})
    )
    assert remote.address == "tcp://sched:8786"


@pytest.mark.slow
def test_partitions_on_a_local_dask_cluster_of_two_processes(churn_env, tmp_path, monkeypatch):
    """Each partition task runs in one of two worker processes, each with its own DuckDB."""
    monkeypatch.setenv("CHURN_TASK_RUNNER", "dask")
    monkeypatch.setenv("CHURN_TASK_WORKERS", "2")
    monkeypatch.setenv("CHURN_DUCKDB_THREADS", "1")
    result = run_flow(partitions=4)
    assert_publishes(churn_env, single_build(churn_env, tmp_path), result, 4, tmp_path)
