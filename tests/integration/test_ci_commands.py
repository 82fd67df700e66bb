"""`churn verdict --run-id ID`, the CI/CD workflow's validate job (.github/workflows/ml-pipeline.yml),
on a real MLflow SQLite store: only an APPROVED gate report passes; a run without one, or no such run,
is an error. (test_promotion.py runs the train job's `churn train --outputs` into this command.)"""

from __future__ import annotations

import pytest

from churn.gates import Check, GateReport
from ops.cli import main


@pytest.fixture
def store(tmp_path, monkeypatch):
    """Settings and a client on an empty embedded MLflow store (no Prefect needed)."""
    from adapters import mlflow_store
    from churn.settings import Settings

    monkeypatch.setenv("CHURN_HOME", str(tmp_path / "home"))
    settings = Settings.from_env()
    return settings, mlflow_store.connect(settings)


def judged_run(settings, client, checks: list[Check]):
    """A registered run whose gates reported ``checks``, stored as the train flow stores them."""
    from adapters import mlflow_store
    from churn.contracts import TrainingRun

    experiment = mlflow_store.experiment_id(settings, client, "ci-commands")
    run = client.create_run(experiment)
    client.set_terminated(run.info.run_id)
    if not client.search_registered_models(f"name='{settings.model_name}'"):
        client.create_registered_model(settings.model_name)
    version = client.create_model_version(
        settings.model_name, str(settings.home), run_id=run.info.run_id
    ).version
    report = GateReport(tuple(checks), settings.model_name, str(version), None)
    training_run = TrainingRun(run.info.run_id, experiment, f"runs:/{run.info.run_id}/model")
    mlflow_store.log_gate_report(settings, training_run, settings.model_name, report)
    return run.info.run_id


PASSED = Check("performance", "auc_roc", "PASS", 0.82, 0.75, "auc_roc: 0.8200 (min 0.75)")
WARNED = Check("drift", "psi_x", "WARN", 0.15, 0.25, "x PSI 0.1500 (max 0.25)")
FAILED = Check("regression", "auc_roc", "FAIL", 0.70, 0.80, "auc_roc: challenger 0.7000, ...")


def test_verdict_passes_only_an_approved_report(store, capsys):
    settings, client = store
    approved = judged_run(settings, client, [PASSED, WARNED])
    rejected = judged_run(settings, client, [PASSED, FAILED])

    assert main(["verdict", "--run-id", approved]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"verdict APPROVED: {settings.model_name} v1 (run {approved}): ")
    assert "1 passed, 1 warnings, 0 failed" in out and "[WARN] drift: x PSI 0.1500" in out

    assert main(["verdict", "--run-id", rejected]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"verdict REJECTED: {settings.model_name} v2")
    assert "  [FAIL] regression: auc_roc: challenger 0.7000" in out
    assert "[PASS]" not in out  # only what needs a look


def test_verdict_without_a_report_is_an_error_not_a_pass(store, capsys):
    settings, client = store
    experiment = client.create_experiment("no-gates")
    unjudged = client.create_run(experiment).info.run_id

    assert main(["verdict", "--run-id", unjudged]) == 2
    assert "has no gates/validation_report.json" in capsys.readouterr().err
    assert main(["verdict", "--run-id", "0" * 32]) == 2
    assert f"no run '{'0' * 32}' in the tracking store" in capsys.readouterr().err
