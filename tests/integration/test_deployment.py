"""The user's path: deploy prefect.yaml, start a process worker, `prefect deployment run --watch`."""

from __future__ import annotations

import json
import os
import subprocess

from ops import stack
from tests.helpers import ROOT


def test_deployments_complete_through_a_process_worker(prefect_server, small_world, tmp_path):
    env = {
        **os.environ,
        "CHURN_HOME": str(tmp_path / "home"),
        "CHURN_RAW_DIR": str(small_world),
        "CHURN_DUCKDB_MEMORY_LIMIT": "1GB",
        "CHURN_PROJECT_DIR": str(ROOT),
    }
    prefect = str(stack.BIN / "prefect")
    stack.ensure_pool({}, ROOT)
    deployed = subprocess.run(
        [prefect, "--no-prompt", "deploy", "--all"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "features/features-daily" in deployed.stdout

    workers = tmp_path / "worker"
    stack.start_process(
        "prefect-worker",
        [prefect, "worker", "start", "--pool", stack.POOL, "--type", "process"],
        {k: env[k] for k in ("CHURN_HOME", "CHURN_RAW_DIR", "CHURN_DUCKDB_MEMORY_LIMIT")},
        workers,
        ROOT,
    )
    runs = {}
    try:
        for name in ("features/features-daily", "train/train-weekly"):
            runs[name] = subprocess.run(
                [prefect, "deployment", "run", name, "--watch", "--watch-timeout", "900"],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=1200,
            )
    finally:
        stack.stop_process("prefect-worker", workers)
    for name, run in runs.items():
        log = (workers / "prefect-worker.log").read_text()[-3000:]
        assert run.returncode == 0 and "Completed" in run.stdout, (
            name + run.stdout[-3000:] + run.stderr[-3000:] + log
        )
    latest = json.loads((tmp_path / "home" / "features" / "latest.json").read_text())
    assert (
        tmp_path / "home" / "features" / "runs" / latest["version"] / "training_set.parquet"
    ).is_file()
    assert (
        tmp_path / "home" / "mlflow.db"
    ).is_file()  # the worker's train run logged to the project store

    for name, cron in (
        ("features/features-daily", "0 5 * * *"),
        ("train/train-weekly", "0 6 * * 1"),
        ("package/package-weekly", "30 6 * * 1"),
        ("monitor/monitor-hourly", "0 * * * *"),
    ):
        inspect = subprocess.run(
            [prefect, "deployment", "inspect", name],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert cron in inspect.stdout, name

    # the monitor's retraining trigger starts a run of the training deployment with its overrides
    import asyncio

    from prefect.client.orchestration import get_client

    from churn.params import MonitorParams
    from tasks.monitoring import start_retraining

    outcome = start_retraining.fn(MonitorParams())
    assert outcome.startswith("flow run ") and outcome.endswith("of train/train-weekly")

    async def read(run_id):
        async with get_client() as client:
            return await client.read_flow_run(run_id)

    run = asyncio.run(read(outcome.split()[2]))
    assert run.parameters["params"]["rebuild_features"] and run.parameters["params"]["package"]
    assert run.parameters["params"]["model_name"] == "churn-classifier"
    assert run.parameters["params"]["gates"] == {"drift": {"mode": "warn"}}


def test_training_through_an_mlflow_server(prefect_server, small_world, tmp_path, monkeypatch):
    """Any tracking URI works: here the MLflow server `make up` starts, on a free port."""
    from adapters.mlflow_store import connect
    from churn.settings import Settings
    from flows.train import train
    from ops.stack import free_port
    from tests.helpers import FAST

    monkeypatch.setenv("CHURN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CHURN_RAW_DIR", str(small_world))
    port = free_port()
    directory = tmp_path / "stack"
    try:
        url = stack.start_mlflow_server(
            Settings.from_env(), directory, ROOT, port=port, timeout=240
        )
        monkeypatch.setenv("CHURN_TRACKING_URI", url)
        result = train(FAST)
        client = connect(Settings.from_env())
        assert client.get_run(result.run.run_id).info.status == "FINISHED"
        assert (
            str(client.get_model_version_by_alias("churn-classifier", "challenger").version)
            == result.version
        )
        assert {f.path for f in client.list_artifacts(result.run.run_id)} >= {"evaluation"}
    finally:
        stack.stop_process("mlflow-server", directory)
