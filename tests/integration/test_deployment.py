"""The user's path: deploy prefect.yaml, start a process worker, `prefect deployment run --watch`."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tasks import stack
from tests.helpers import ROOT

pytestmark = pytest.mark.slow


def test_features_deployment_completes_through_a_process_worker(prefect_server, small_world, tmp_path):
    env = {
        **os.environ,
        "CHURN_HOME": str(tmp_path / "home"),
        "CHURN_RAW_DIR": str(small_world),
        "CHURN_DUCKDB_MEMORY_LIMIT": "1GB",
        "CHURN_PROJECT_DIR": str(ROOT),
    }
    prefect = str(stack.BIN / "prefect")
    stack.ensure_pool({}, ROOT)
    deployed = subprocess.run([prefect, "--no-prompt", "deploy", "--all"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "features/features-daily" in deployed.stdout

    workers = tmp_path / "worker"
    stack.start_process("prefect-worker", [prefect, "worker", "start", "--pool", stack.POOL, "--type", "process"],
                        {k: env[k] for k in ("CHURN_HOME", "CHURN_RAW_DIR", "CHURN_DUCKDB_MEMORY_LIMIT")}, workers, ROOT)
    try:
        run = subprocess.run(
            [prefect, "deployment", "run", "features/features-daily", "--watch", "--watch-timeout", "900"],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200,
        )
    finally:
        stack.stop_process("prefect-worker", workers)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + (workers / "prefect-worker.log").read_text()[-3000:]
    assert "Completed" in run.stdout
    latest = json.loads((tmp_path / "home" / "features" / "latest.json").read_text())
    assert (tmp_path / "home" / "features" / "runs" / latest["version"] / "training_set.parquet").is_file()

    inspect = subprocess.run([prefect, "deployment", "inspect", "features/features-daily"], env=env, cwd=ROOT,
                             capture_output=True, text=True)
    assert "0 5 * * *" in inspect.stdout  # scheduled daily
