"""The level-3 loop end to end on small data: `churn simulate` against a real `bentoml serve`.

Drifted traffic -> drift alerts -> labels delivered -> retraining fired -> the retrained challenger
passes the gates -> promoted and packaged -> the running service answers with the new version.
"""

from __future__ import annotations

import json
import os
import subprocess

import duckdb

from ops import stack
from tests.helpers import ROOT, run_churn

TOKEN = "loop-token"


def churn(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_churn(*args, env=env, timeout=1500)


def test_drift_alert_retrain_promotion_and_the_new_model_served(prefect_server, tmp_path):
    home = tmp_path / "home"
    env = {
        **os.environ,
        "CHURN_HOME": str(home),
        "CHURN_RAW_DIR": str(home / "raw"),
        "BENTOML_HOME": str(home / "bentoml"),
    }
    generated = churn(
        "generate",
        "--customers",
        "8000",
        "--months",
        "14",
        "--drift-months",
        "2",
        "--seed",
        "5",
        env=env,
    )
    assert generated.returncode == 0, generated.stderr
    demo = churn("demo", env=env)  # features, train (v1 approved), package
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]

    port = stack.free_port()
    directory = home / "serve"
    env = {
        "CHURN_HOME": str(home),
        "BENTOML_HOME": str(home / "bentoml"),
        "CHURN_API_TOKEN": TOKEN,
        "CHURN_RELOAD_SECONDS": "1",
    }
    stack.start_process(
        "bentoml",
        stack.serve_command(port),
        env,
        directory,
        ROOT,
    )
    try:
        stack.wait_healthy(f"http://127.0.0.1:{port}/readyz", 180, directory / "bentoml.log")
        simulated = churn(
            "simulate",
            "--url",
            f"http://127.0.0.1:{port}",
            "--token",
            TOKEN,
            "--min-new-labels",
            "100",
            env=env,
        )
        out = simulated.stdout
    finally:
        stack.stop_process("bentoml", directory)
    assert simulated.returncode == 0, out[-5000:] + simulated.stderr[-3000:]
    assert "alert fired: drifted_share" in out and "retraining FIRED" in out
    assert "the service now answers with model version 2" in out
    with duckdb.connect(str(home / "monitoring" / "monitoring.duckdb"), read_only=True) as con:
        windows = con.execute(
            "select count(*), max(labelled), bool_or(dataset_drift) from windows"
        ).fetchall()[0]
        decisions = con.execute(
            "select fired, reason, flow_run from retrain_decisions order by created_at"
        ).fetchall()
    assert windows[0] == 5 and windows[1] > 0 and windows[2]
    assert [d[0] for d in decisions] == [False, False, False, False, True]
    assert "promoted" in decisions[-1][2] and "needs 2 of 3" in decisions[0][1]
    last = json.loads((home / "registry_events.jsonl").read_text().splitlines()[-1])
    assert (last["action"], last["champion"], last["previous"]) == ("promote", "2", "1")
