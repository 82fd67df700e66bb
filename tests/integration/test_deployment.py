"""The user's path: deploy prefect.yaml, start a process worker, `prefect deployment run --watch`."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime

from ops import stack
from tests.helpers import ROOT


def test_deployments_complete_through_a_process_worker(
    prefect_server, small_world, tmp_path, monkeypatch
):
    from churn.settings import Settings

    monkeypatch.setenv("CHURN_HOME", str(tmp_path / "home"))
    env = {
        **os.environ,
        "CHURN_HOME": str(tmp_path / "home"),
        "CHURN_RAW_DIR": str(small_world),
        "CHURN_DUCKDB_MEMORY_LIMIT": "1GB",
        "CHURN_PROJECT_DIR": str(ROOT),
    }
    prefect = str(stack.BIN / "prefect")
    stack.ensure_pool(Settings.from_env(), {}, ROOT)
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

    # the pool declares the runs' environment; schedules are registered paused
    import asyncio
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    from churn.params import MonitorParams
    from tasks.monitoring import start_retraining

    async def read_state():
        async with get_client() as client:
            pool = await client.read_work_pool(stack.POOL)
            deployments = {
                name: await client.read_deployment_by_name(name)
                for name in ("train/train-weekly", "monitor/monitor-hourly")
            }
            return pool, deployments, await client.read_automations()

    pool, deployments, automations = asyncio.run(read_state())
    declared = pool.base_job_template["variables"]["properties"]
    assert declared["env"]["default"]["CHURN_HOME"] == str(tmp_path / "home")
    assert declared["working_dir"]["default"] == str(ROOT)
    assert all(not s.active for d in deployments.values() for s in d.schedules)
    training = deployments["train/train-weekly"]
    assert training.global_concurrency_limit.limit == 1
    assert training.concurrency_options.collision_strategy == "ENQUEUE"
    trigger = next(a for a in automations if a.name == "retrain when the monitor requests it")
    assert trigger.enabled and trigger.trigger.expect == {"churn.retrain.requested"}
    assert trigger.actions[0].deployment_id == deployments["train/train-weekly"].id

    # the monitor's retrain request is an event; the automation starts the training deployment
    # with the retrain overrides
    outcome = start_retraining.fn(MonitorParams(), datetime(2026, 1, 1, 12))
    assert outcome.startswith("event ") and "train/train-weekly" in outcome

    async def triggered():
        async with get_client() as client:
            runs = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(
                    id=DeploymentFilterId(any_=[deployments["train/train-weekly"].id])
                )
            )
            return [r for r in runs if r.parameters.get("params")]

    deadline, runs = time.monotonic() + 120, []
    while time.monotonic() < deadline and not runs:
        runs = asyncio.run(triggered())
        time.sleep(2)
    assert len(runs) == 1, "the trigger started exactly one training run"
    params = runs[0].parameters["params"]
    assert params["rebuild_features"] and params["package"]
    assert params["model_name"] == "churn-classifier"
    assert params["gates"] == {"drift": {"mode": "warn"}}


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
