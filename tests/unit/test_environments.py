"""Environments as configuration: the shipped files load, errors name file and field, the promotion
rule (prod needs what staging served, or an override with a reason), smoke answers judged."""

from __future__ import annotations

import re

import pytest

from churn.environments import (
    environment_gates,
    load_environment,
    promotion_allowed,
    smoke_problem,
)
from tests.helpers import ROOT

FOLDER = ROOT / "deploy" / "environments"


def test_the_shipped_environments_load_with_their_targets_and_rules():
    dev, staging, prod = (load_environment(FOLDER, n) for n in ("dev", "staging", "prod"))
    assert dev.target.kind == "docker" and dev.image.registry is None and not dev.schedules_active
    assert staging.target.kind == prod.target.kind == "kubernetes"
    assert (staging.target.overlay, prod.target.overlay) == ("staging", "prod")
    assert (ROOT / "deploy" / "k8s" / "overlays" / prod.target.overlay).is_dir()
    assert prod.requires == "staging" and staging.requires is None
    assert prod.gates.performance.min_auc_roc > dev.gates.performance.min_auc_roc
    assert environment_gates(FOLDER, "prod")["performance"] == {"min_auc_roc": 0.78}
    assert environment_gates(FOLDER, "dev") == {} and environment_gates(FOLDER, "nowhere") == {}


def test_a_wrong_environment_file_names_the_file_and_the_field(tmp_path):
    (tmp_path / "qa.yml").write_text("target: {kind: docker, port: 99999}\nimage: {regstry: x}\n")
    with pytest.raises(ValueError) as wrong:
        load_environment(tmp_path, "qa")
    assert "qa.yml" in str(wrong.value) and "target.docker.port" in str(wrong.value)
    assert "image.regstry" in str(wrong.value)
    with pytest.raises(LookupError, match=r"no environment 'uat'.*known: \['qa'\]"):
        load_environment(tmp_path, "uat")
    (tmp_path / "loop.yml").write_text("target: {kind: docker}\nrequires: loop\n")
    with pytest.raises(ValueError, match="cannot require itself"):
        load_environment(tmp_path, "loop")


def test_prod_takes_only_what_staging_served_unless_overridden_with_a_reason():
    prod = load_environment(FOLDER, "prod")
    assert "staging served model version 4" in promotion_allowed(
        prod, "4", {"staging": {"4"}}, None
    )
    with pytest.raises(ValueError, match="not been served by staging"):
        promotion_allowed(prod, "5", {"staging": {"4"}, "prod": {"5"}}, None)
    with pytest.raises(ValueError, match="at least 10 characters"):
        promotion_allowed(prod, "5", {}, "urgent")
    assert promotion_allowed(prod, "5", {}, "hotfix for the broken v4 threshold").startswith(
        "override: hotfix"
    )
    dev = load_environment(FOLDER, "dev")
    assert "requires no earlier" in promotion_allowed(dev, "9", {}, None)


def test_a_smoke_answer_must_score_every_id_with_the_new_model():
    good = [{"customer_id": 1, "probability": 0.2, "model_version": "3"}]
    assert smoke_problem(good, [1], "3") is None
    assert "served by model 2" in smoke_problem([{**good[0], "model_version": "2"}], [1], "3")
    assert "expected 2 answers" in smoke_problem(good, [1, 2], "3")
    assert "not in [0, 1]" in smoke_problem([{**good[0], "probability": 1.5}], [1], "3")
    assert "expected 1 answers" in smoke_problem({"title": "Unauthorized"}, [1], "3")


def test_the_package_flow_rolls_out_only_where_the_running_environment_asks(tmp_path):
    from churn.settings import Settings
    from tasks.deploy import auto_rollout_environment

    (tmp_path / "qa.yml").write_text("target: {kind: docker}\nauto_rollout: true\n")
    (tmp_path / "dev.yml").write_text("target: {kind: docker}\n")

    def settings(env):
        return Settings.from_env(
            {"CHURN_ENVIRONMENTS_DIR": str(tmp_path), "CHURN_ENV": env, "CHURN_HOME": str(tmp_path)}
        )

    assert auto_rollout_environment.fn(settings("qa")) == "qa"
    assert auto_rollout_environment.fn(settings("dev")) is None
    assert auto_rollout_environment.fn(settings("laptop")) is None  # no file: nothing to roll out


def test_flows_on_kubernetes_need_a_kubernetes_target_default_resources_and_fitting_requests(
    tmp_path,
):
    staging = load_environment(FOLDER, "staging")
    assert staging.flows is not None and load_environment(FOLDER, "dev").flows is None
    assert staging.flows.resources_of("train-weekly").memory_limit == "4Gi"
    assert staging.flows.resources_of("rollback") == staging.flows.resources["default"]
    size = "{cpu_request: 500m, cpu_limit: '1', memory_request: 1Gi, memory_limit: 2Gi}"
    k8s = "target: {kind: kubernetes, overlay: x, namespace: x}\n"
    too_much = "{cpu_request: '2', cpu_limit: '1', memory_request: 1Gi, memory_limit: 1Gi}"
    no_quantity = "{cpu_request: 1 cpu, cpu_limit: '1', memory_request: 1Gi, memory_limit: 1Gi}"
    cases = {
        "target: {kind: docker}\nflows: {resources: {default: " + size + "}}": "kubernetes target",
        k8s + "flows: {resources: {}}": "'default'",
        k8s
        + "flows: {resources: {default: "
        + too_much
        + "}}": "cpu_request 2 is above cpu_limit 1",
        k8s
        + f"flows: {{resources: {{default: {size}, train: {size}}}}}": "not listed here: ['train']",
        k8s
        + "flows: {resources: {default: "
        + no_quantity
        + "}}": "flows.resources.default.cpu_request",
    }
    for text, expected in cases.items():
        (tmp_path / "qa.yml").write_text(text)
        with pytest.raises(ValueError, match=re.escape(expected)):
            load_environment(tmp_path, "qa")


def test_a_flow_pod_is_told_its_own_size_not_the_nodes():
    from churn.environments import FlowResources, quantity
    from churn.flow_deployments import sized_settings

    assert quantity("500m") == 0.5 and quantity("4Gi") == 4 * 2**30 and quantity("2") == 2
    small = FlowResources(
        cpu_request="250m", cpu_limit="1500m", memory_request="1Gi", memory_limit="2Gi"
    )
    assert sized_settings(small) == {
        "CHURN_DUCKDB_THREADS": "1",
        "CHURN_TRAIN_THREADS": "1",
        "CHURN_TASK_WORKERS": "1",
        "CHURN_DUCKDB_MEMORY_LIMIT": "1073MB",
    }
