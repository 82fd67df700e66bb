"""A corrupted source batch stops the pipeline at validation: every failing expectation is listed,
Data Docs are built, and nothing is published, trained or promoted."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from adapters.validation import DataValidationError
from churn.params import TrainParams

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def corrupted(tmp_path, monkeypatch, small_world):
    raw = tmp_path / "raw"
    shutil.copytree(small_world, raw)
    monkeypatch.setenv("CHURN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CHURN_RAW_DIR", str(raw))
    return raw


def nothing_trained(home):
    from adapters.mlflow_store import connect
    from churn.settings import Settings

    client = connect(Settings.from_env())
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    return (
        runs == []
        and client.search_registered_models() == []
        and not (home / "features" / "latest.json").exists()
    )


def test_nulls_negative_amounts_and_duplicate_ids_fail_validation(corrupted, tmp_path):
    from churn.settings import Settings
    from flows.train import train

    tx = pd.read_parquet(corrupted / "transactions.parquet")
    tx.loc[:9, "amount"] = -5.0
    tx["customer_id"] = tx["customer_id"].astype("Int64")
    tx.loc[10:14, "customer_id"] = pd.NA
    tx = pd.concat([tx, tx.iloc[20:23]], ignore_index=True)  # three duplicated transaction ids
    tx.to_parquet(corrupted / "transactions.parquet")

    with pytest.raises(DataValidationError) as failure:
        train(TrainParams(rebuild_features=True))
    message = str(failure.value)
    assert "suite 'source.transactions'" in message
    assert "expect_column_values_to_be_between on 'amount': 10 unexpected, e.g. [-5.0" in message
    assert "expect_column_values_to_not_be_null on 'customer_id': 5 unexpected" in message
    assert "expect_column_values_to_be_unique on 'transaction_id': 6 unexpected" in message
    assert "source.events" not in message  # the clean sources pass
    assert Settings.from_env().data_docs_index.is_file()
    assert nothing_trained(tmp_path / "home")


def test_a_missing_column_stops_the_pipeline_before_training(corrupted, tmp_path):
    from flows.train import train

    pd.read_parquet(corrupted / "tickets.parquet").drop(columns=["priority"]).to_parquet(
        corrupted / "tickets.parquet"
    )
    with pytest.raises(
        Exception, match="source 'tickets' .*missing column 'priority'; expected str"
    ):
        train(TrainParams(rebuild_features=True))
    assert nothing_trained(tmp_path / "home")


def test_a_stale_feed_fails_freshness(corrupted, tmp_path):
    from flows.features import features

    events = pd.read_parquet(corrupted / "events.parquet")
    cutoff = events["ts"].max() - pd.Timedelta(days=10)
    events[events["ts"] < cutoff].to_parquet(
        corrupted / "events.parquet"
    )  # the feed stopped 10 days early
    with pytest.raises(DataValidationError, match="expect_column_max_to_be_between on 'ts'"):
        features()
    assert not (tmp_path / "home" / "features" / "latest.json").exists()
