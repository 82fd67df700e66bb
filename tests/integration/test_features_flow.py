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
