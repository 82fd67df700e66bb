"""A user's own repo all the way, unlike the churn world: a loan book whose entity is `id`, with a
bool, categorical and numeric features, half the loans defaulting and an outcomes source that
grows as loans resolve. Repo check, train, package and serve under the repo's own model and
service names; `churn replay` of a later period whose second half drifts on four features; the
monitor judging each week by the applications' own time; outcomes delivered later and judged per
window; retraining on the new labels; the new model served."""

from __future__ import annotations

import json
import os
import subprocess
import time

import duckdb
import httpx
import pandas as pd

from ops import stack
from tests.fixtures.real_shaped import LOAN_REPO, write_loans
from tests.helpers import ROOT, run_churn

SHIFTED = {"amount", "grade", "income", "dti"}
STEADY = {"term_months", "home_owner", "purpose"}
WEEK = 7 * 24 * 60


def churn(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_churn(*args, env=env, timeout=1500)


def test_a_loan_book_is_served_monitored_by_its_own_time_and_retrained_on_new_labels(
    prefect_server, tmp_path
):
    raw, later, later_outcomes = write_loans(tmp_path / "raw", tmp_path / "later")
    home = tmp_path / "home"
    own = {
        "CHURN_HOME": str(home),
        "CHURN_RAW_DIR": str(raw),
        "CHURN_FEATURE_REPO": str(LOAN_REPO),
        "BENTOML_HOME": str(home / "bentoml"),
        "CHURN_MODEL_NAME": "loan-default",
        "CHURN_SERVICE_NAME": "loans",
        "CHURN_DUCKDB_MEMORY_LIMIT": "1GB",
    }
    env = {**os.environ, **own}
    for step in (["repo", "check"], ["train"], ["package"]):
        done = churn(*step, env=env)
        assert done.returncode == 0, " ".join(step) + done.stdout[-3000:] + done.stderr[-3000:]
        if step == ["train"]:
            assert "Overall: APPROVED" in done.stdout

    port, directory = stack.free_port(), home / "serve"
    stack.start_process(
        "bentoml",
        stack.serve_command(port),
        {**own, "CHURN_RELOAD_SECONDS": "1"},
        directory,
        ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        stack.wait_healthy(f"{url}/readyz", 180, directory / "bentoml.log")
        first = pd.read_parquet(later).iloc[0]
        features = {
            k: (v.item() if hasattr(v, "item") else v)
            for k, v in first.drop(["id", "applied_at"]).items()
        }
        one = httpx.post(
            f"{url}/predict", json={"id": int(first["id"]), "features": features}, timeout=30
        )
        assert one.status_code == 200 and one.json()["id"] == int(first["id"]), one.text
        assert httpx.get(f"{url}/metadata", timeout=30).json()["model_name"] == "loan-default"

        policy = {
            "breaches": 2,
            "windows": 3,
            "min_new_labels": 200,
            "cooldown_hours": 1,  # real time: one retrain within this replay
            "in_process": True,
        }
        monitor = {
            "alerts": {"min_rows": 100, "min_labelled": 100},
            "retrain": policy,
            "report_sample_rows": 500,
        }
        replayed = churn(
            "replay",
            str(later),
            "--url",
            url,
            "--time-column",
            "applied_at",
            "--window-minutes",
            str(WEEK),
            "--deliver",
            f"{later}=applications",
            "--deliver",
            f"{later_outcomes}=outcomes",
            "--monitor",
            "--monitor-params",
            json.dumps(monitor),
            env=env,
        )
        assert replayed.returncode == 0, replayed.stdout[-5000:] + replayed.stderr[-3000:]
        deadline, served = time.monotonic() + 120, "1"
        while served == "1" and time.monotonic() < deadline:
            served = httpx.get(f"{url}/health", timeout=30).json()["model_version"]
            time.sleep(1)
    finally:
        stack.stop_process("bentoml", directory)
    assert served == "2", replayed.stdout[-3000:]

    with duckdb.connect(str(home / "monitoring" / "monitoring.duckdb"), read_only=True) as con:
        weeks = con.execute(
            "select window_start, window_end, count, window_labelled, model_version from windows "
            "where time_axis = 'as_of' order by window_start"
        ).fetchall()
        drifted = {
            start: {
                f
                for (f,) in con.execute(
                    "select feature from feature_drift where window_end = $e and drifted",
                    {"e": end},
                ).fetchall()
            }
            for start, end, *_ in weeks
        }
        fired = con.execute(
            "select window_end, flow_run from retrain_decisions where fired order by window_end"
        ).fetchall()
    assert len(weeks) == 8 and all(count == 400 for _, _, count, _, _ in weeks)
    assert all(
        labelled > 0 for *_, labelled, _ in weeks[:6]
    )  # per-window labels once outcomes arrived
    before = [drifted[w[0]] for w in weeks if w[4] == "1"][:4]
    assert before == [set()] * 4, before  # the steady half: nothing drifted
    shifted = [
        drifted[w[0]] for w in weeks[4:6]
    ]  # the shifted half, judged against the first champion
    assert all(found >= SHIFTED and not (found & STEADY) for found in shifted), shifted
    assert fired and "in-process train: v2 promoted" in fired[0][1]
    assert fired[0][0] > weeks[4][0]  # retraining fired in the drifted half
    retrained = [
        json.loads(line) for line in (home / "registry_events.jsonl").read_text().splitlines()
    ][-1]
    assert (retrained["action"], retrained["model"], retrained["champion"]) == (
        "promote",
        "loan-default",
        "2",
    )
