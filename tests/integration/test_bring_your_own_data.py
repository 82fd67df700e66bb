"""Bring your own data, first time: three repos shaped like public data sets nobody here wrote go
through repo check, features, train (APPROVED with the default gates), package and a served prediction,
with no Python change: a telco snapshot with 'Yes'/'No' labels and a tiny payment level, a retail
purchase log where everyone joined in month one (monthly as-of dates, lifetime features left out of
drift), and an app with string user ids and half its users churning."""

from __future__ import annotations

import json
import os

import httpx
import pandas as pd
import pytest

from adapters.repo_check import check_repo
from churn.settings import Settings
from ops import stack
from tests.fixtures.real_shaped import (
    APP_REPO,
    RETAIL_REPO,
    TELCO_REPO,
    write_app,
    write_retail,
    write_telco,
)
from tests.helpers import ROOT
from tests.helpers import run_churn as churn

REPOS = {
    "telco": (TELCO_REPO, write_telco, "account_number"),
    "retail": (RETAIL_REPO, write_retail, "customer_id"),
    "app": (APP_REPO, write_app, "user_key"),
}


@pytest.mark.parametrize("name", list(REPOS))
def test_a_new_users_repo_goes_from_tables_to_a_served_prediction(
    name, prefect_server, tmp_path, monkeypatch
):
    repo, write, entity = REPOS[name]
    raw = write(tmp_path / "raw")
    home = tmp_path / "home"
    env = {
        "CHURN_HOME": str(home),
        "CHURN_RAW_DIR": str(raw),
        "CHURN_FEATURE_REPO": str(repo),
        "CHURN_DUCKDB_MEMORY_LIMIT": "1GB",
        # the app names its model and service itself: every stage follows the configuration
        **(
            {"CHURN_MODEL_NAME": "app-activity", "CHURN_SERVICE_NAME": "app"}
            if name == "app"
            else {}
        ),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    env = {**os.environ, **env, "BENTOML_HOME": str(home / "bentoml")}

    checked = check_repo(Settings.from_env())
    assert {r.status for r in checked} <= {"ok", "SKIP"}, [
        r for r in checked if r.status not in ("ok", "SKIP")
    ]

    from flows.train import train

    trained = (
        train()
    )  # default params (and the repo's pipeline.yml, where it has one): features built first
    assert trained.decision == "APPROVED" and trained.promoted, trained.report
    if name == "retail":
        assert "[SKIP] drift: days_since_first_order: excluded: grows with time" in trained.report
    packaged = churn("package", env=env)
    assert packaged.returncode == 0, packaged.stdout[-2000:] + packaged.stderr[-2000:]

    snapshot = pd.read_parquet(next((home / "features").rglob("online_snapshot.parquet")))
    row = snapshot.iloc[0]
    features = {
        k: (None if pd.isna(v) else (v.item() if hasattr(v, "item") else v))
        for k, v in row.drop([entity, "as_of"]).items()
    }
    entity_id = row[entity].item() if hasattr(row[entity], "item") else row[entity]
    port, directory = stack.free_port(), home / "serve"
    stack.start_process(
        "bentoml",
        stack.serve_command(port),
        {k: env[k] for k in env if k.startswith(("CHURN_", "BENTOML_"))},
        directory,
        ROOT,
    )
    try:
        stack.wait_healthy(f"http://127.0.0.1:{port}/readyz", 180, directory / "bentoml.log")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            one = client.post("/predict", json={entity: entity_id, "features": features})
            by_id = client.post("/predict_by_id", json={"ids": [entity_id]})
            if name == "app":  # a bool feature: JSON true/false only
                as_number = client.post(
                    "/predict",
                    json={entity: entity_id, "features": {**features, "notifications": 1}},
                )
                assert (
                    as_number.status_code == 422
                    and "features.notifications: expected true or false" in as_number.text
                )
    finally:
        stack.stop_process("bentoml", directory)
    assert one.status_code == 200, one.text
    assert one.json()[entity] == entity_id and one.json()["model_version"] == trained.version
    assert trained.model_name == ("app-activity" if name == "app" else "churn-classifier")
    assert by_id.status_code == 200 and by_id.json()[0]["probability"] == pytest.approx(
        one.json()["probability"]
    )
    if name == "app":  # logged as sent: the monitor reads it back as 0/1
        assert isinstance(features["notifications"], bool)
        logged = [
            json.loads(line)
            for f in (home / "predictions").glob("*.jsonl")
            for line in f.read_text().splitlines()
        ]
        assert logged[0]["features"]["notifications"] is features["notifications"]
