"""The CI/CD workflow (.github/workflows/ml-pipeline.yml) is a thin, locked-down wrapper: every step
runs a make target that exists or a churn command the CLI accepts, every action is pinned to a commit,
no expression is expanded inside a script, permissions are least, and deploys happen only from main,
staging before prod. (`make check-workflows` adds the schema, actionlint and zizmor.)"""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import yaml

from ops.cli import _parser
from tests.helpers import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "ml-pipeline.yml"
MAIN = "github.ref == 'refs/heads/main'"
CREDENTIAL_STEPS = {"registry-login", "kubeconfig"}
"""Steps that only hand GitHub's environment secrets to the tools (no pipeline logic)."""


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    loaded = yaml.safe_load(WORKFLOW.read_text())
    loaded["on"] = loaded.pop(True)  # YAML 1.1 reads the key `on` as a boolean
    return loaded


def steps(workflow):
    for name, job in workflow["jobs"].items():
        for step in job["steps"]:
            yield name, step


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+):", text, re.M))


def test_it_runs_on_the_pipeline_code_weekly_and_by_hand(workflow):
    on = workflow["on"]
    assert on["push"]["branches"] == ["main"]
    assert set(on["push"]["paths"]) == {
        f"{d}/**" for d in ("feature_sql", "flows", "tasks", "churn", "bentos", "adapters")
    }
    assert on["schedule"] == [{"cron": "0 6 * * 1"}]
    assert "workflow_dispatch" in on


def test_the_jobs_mirror_the_seed_pipeline(workflow):
    jobs = workflow["jobs"]
    needs = {name: job.get("needs") for name, job in jobs.items()}
    assert needs == {
        "test": None,
        "train": "test",
        "validate": "train",
        "deploy-staging": "validate",
        "deploy-prod": "deploy-staging",
    }
    assert set(jobs["train"]["outputs"]) == {"run_id", "model_version", "verdict"}
    for name in ("train", "deploy-staging", "deploy-prod"):
        assert jobs[name]["if"] == MAIN, f"{name} must run only on main"
    assert jobs["deploy-staging"]["environment"] == "staging"
    assert jobs["deploy-prod"]["environment"] == "prod"  # its protection rule is the approval


def test_every_step_is_a_make_target_or_a_churn_command(workflow):
    targets, parser = make_targets(), _parser()
    for job, step in steps(workflow):
        if "uses" in step or step.get("id") in CREDENTIAL_STEPS:
            continue
        argv = shlex.split(step["run"])
        where = f"{job}: {step['run']!r}"
        if argv[0] == "make":
            target = argv[1]
            assert all("=" in a for a in argv[2:]), f"{where}: one target per step"
            assert target in targets, f"{where}: no such make target"
        else:
            assert argv[0] == ".venv/bin/churn", f"{where}: neither make nor churn"
            parser.parse_args(argv[1:])  # exits (fails the test) on an unknown command or option


def test_no_expression_is_expanded_inside_a_script(workflow):
    for job, step in steps(workflow):
        assert "${{" not in step.get("run", ""), f"{job}: pass values to scripts through env:"


def test_actions_are_pinned_to_commits_and_checkouts_keep_no_credentials(workflow):
    uses = re.findall(r"uses:\s*(\S+)(.*)", WORKFLOW.read_text())
    assert uses
    for ref, comment in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), (
            f"{ref} is not pinned to a commit"
        )
        assert re.fullmatch(r"\s*# v\d+(\.\d+)*", comment), f"{ref}: say which version it is"
    for job, step in steps(workflow):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False, job


def test_least_privilege_timeouts_and_no_cancelled_deploys(workflow):
    assert workflow["permissions"] == {}
    assert workflow["concurrency"]["cancel-in-progress"] is False
    for name, job in workflow["jobs"].items():
        assert job["permissions"] == {"contents": "read"}, name
        assert 0 < job["timeout-minutes"] <= 60, name
    for name in ("deploy-staging", "deploy-prod"):
        assert workflow["jobs"][name]["concurrency"]["cancel-in-progress"] is False
