"""Gates and promotion end to end: first model approved, degraded challenger rejected (trained and
judged through the CI/CD workflow's commands), rollback, and racing promotions, on a real Prefect
server and MLflow SQLite store."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from tests.helpers import SMALL_WORLD_PARAMS, prefect_events

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def home(tmp_path, monkeypatch, small_world):
    monkeypatch.setenv("CHURN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CHURN_RAW_DIR", str(small_world))
    from churn.settings import Settings

    return Settings.from_env()


def aliases(settings):
    from adapters import mlflow_store, registry

    client = mlflow_store.connect(settings)
    return {
        a: registry.alias_version(client, "churn-classifier", a)
        for a in ("champion", "previous", "challenger")
    }


def degrade_training_labels(settings):
    """Publish a copy of the latest feature set whose labels are shuffled everywhere but the test dates."""
    from adapters import feature_sets

    source = feature_sets.latest(settings.features_dir)
    frame = pd.read_parquet(source.path / feature_sets.TRAINING_SET)
    test_start = sorted(frame["as_of"].unique())[-SMALL_WORLD_PARAMS.test_dates]
    early = frame["as_of"] < test_start
    frame.loc[early, "label"] = np.random.default_rng(0).permutation(
        frame.loc[early, "label"].to_numpy()
    )
    version, staging = feature_sets.new_staging(settings.features_dir)
    frame.to_parquet(staging / feature_sets.TRAINING_SET)
    (staging / feature_sets.ONLINE_SNAPSHOT).write_bytes(
        (source.path / feature_sets.ONLINE_SNAPSHOT).read_bytes()
    )
    feature_sets.publish(
        settings.features_dir, staging, source.manifest.model_copy(update={"version": version})
    )


def test_gates_promote_reject_and_roll_back(home, tmp_path, capsys):
    from adapters import mlflow_store
    from flows.train import train
    from ops.cli import main

    since = datetime.now(UTC)
    first = train(SMALL_WORLD_PARAMS)
    assert first.decision == "APPROVED" and first.promoted
    assert "no champion yet" in first.report and "Overall: APPROVED" in first.report
    assert aliases(home) == {"champion": "1", "previous": None, "challenger": "1"}

    second = train(SMALL_WORLD_PARAMS)  # same data, same seed: equal metrics, no regression
    assert second.decision == "APPROVED"
    assert aliases(home) == {"champion": "2", "previous": "1", "challenger": "2"}

    degrade_training_labels(home)
    # the third run goes the CI/CD workflow's way: its train job, then its validate job
    outputs = tmp_path / "github_output"
    params = SMALL_WORLD_PARAMS.model_dump_json()
    assert main(["train", "--params", params, "--outputs", str(outputs)]) == 0
    report = capsys.readouterr().out
    third = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    assert third == {"run_id": third["run_id"], "model_version": "3", "verdict": "REJECTED"}
    assert "[FAIL] regression: auc_roc" in report and "[FAIL] performance: auc_roc" in report
    assert main(["verdict", "--run-id", third["run_id"]]) == 1  # the workflow stops here
    assert "  [FAIL] regression: auc_roc" in capsys.readouterr().out
    # and the Prefect UI shows the rejection: the run's state, its tags, an event
    (run,) = latest_runs("train", 1)
    assert run.state.type.value == "COMPLETED" and run.state.name == "Rejected"
    assert run.state.message.startswith("churn-classifier v3 REJECTED: ")
    assert "regression: auc_roc" in run.state.message
    assert {"rejected", "cli", "cli-train"} <= set(run.tags)
    (rejected,) = prefect_events("churn.model.rejected", since)
    assert (
        rejected["payload"]["version"] == "3"
        and "regression: auc_roc" in rejected["payload"]["failed"]
    )
    assert len(prefect_events("churn.model.promoted", since, expect=2)) == 2
    assert aliases(home) == {"champion": "2", "previous": "1", "challenger": "3"}
    client = mlflow_store.connect(home)
    files = {f.path for f in client.list_artifacts(third["run_id"], "gates")}
    assert files == {"gates/validation_report.txt", "gates/validation_report.json"}
    assert client.get_model_version("churn-classifier", "3").tags["gates.decision"] == "REJECTED"

    # the rollback runs as a user runs it, in its own process: it packages the rolled-back
    # champion, and BentoML binds its model store once per process
    import os
    import subprocess

    from ops.stack import BIN

    def rollback(reason: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "churn"), "rollback", "--reason", reason],
            env={**os.environ, "BENTOML_HOME": str(home.bentoml_home)},
            capture_output=True,
            text=True,
        )

    done = rollback("bad predictions reported by the retention team")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "champion v2 -> v1" in done.stdout
    assert aliases(home)["champion"] == "1"
    assert (
        client.get_model_version("churn-classifier", "2").tags["rolled_back"]
        == "bad predictions reported by the retention team"
    )
    log = home.registry_log.read_text().splitlines()
    assert [line.count('"action": "rollback"') for line in log][-1] == 1
    again = rollback("again")
    assert again.returncode == 2 and "nothing to roll back to" in again.stderr
    # the rolled-back champion is packaged, so a running service serves it at its next reload
    models = home.bentoml_home / "models" / "churn-classifier"
    latest = (models / "latest").read_text().strip()
    assert "model_version: '1'" in (models / latest / "model.yaml").read_text()
    assert prefect_events("churn.model.rolled-back", since)[0]["payload"]["champion"] == "1"


def latest_runs(flow_name: str, n: int):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=n,
        )


def test_racing_promotions_leave_exactly_one_champion(home):
    from mlflow.exceptions import MlflowException  # noqa: F401  (imported for the registry client)

    from adapters import mlflow_store, registry

    client = mlflow_store.connect(home)
    client.create_registered_model("churn-classifier")
    source = home.home / "dummy-model"
    source.mkdir(parents=True)
    versions = [
        client.create_model_version("churn-classifier", str(source)).version for _ in range(5)
    ]
    registry.promote(home, client, "churn-classifier", str(versions[0]), None, reason="first")

    outcomes, barrier = [], threading.Barrier(4)

    def contender(version):
        barrier.wait()
        try:
            registry.promote(
                home,
                mlflow_store.connect(home),
                "churn-classifier",
                str(version),
                "1",
                reason="race",
            )
            outcomes.append(("won", version))
        except registry.PromotionConflict:
            outcomes.append(("lost", version))

    threads = [threading.Thread(target=contender, args=(v,)) for v in versions[1:]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [str(v) for result, v in outcomes if result == "won"]
    assert len(winners) == 1 and len(outcomes) == 4
    state = aliases(home)
    assert state["champion"] == winners[0] and state["previous"] == "1"
    holders = [
        mv.version
        for mv in client.search_model_versions("name='churn-classifier'")
        if "champion" in client.get_model_version("churn-classifier", mv.version).aliases
    ]
    assert [str(v) for v in holders] == winners
