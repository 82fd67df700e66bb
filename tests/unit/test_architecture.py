"""The house rules, checked on the source: which floor may import which, what tasks/ holds, and that
every location under CHURN_HOME and the model name come from churn/settings.py."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT

FLOORS = ("churn", "adapters", "tasks", "flows", "ops")
"""Lowest first: a package may import only from its own floor and the floors below it."""
ORCHESTRATION = ("prefect",)
SERVICES = ("mlflow", "bentoml", "great_expectations", "evidently", "duckdb")


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("package", FLOORS)
def test_no_import_runs_up_a_floor(package):
    above = set(FLOORS[FLOORS.index(package) + 1 :]) | {"bentos", "benchmarks", "tests"}
    wrong = {
        f"{p.relative_to(ROOT)}: {name}"
        for p in modules(package)
        for name in imports(p)
        if top(name) in above
    }
    assert not wrong, sorted(wrong)


def test_the_library_needs_no_orchestrator_store_or_server():
    wrong = {
        f"{p.relative_to(ROOT)}: {n}"
        for p in modules("churn")
        for n in imports(p)
        if top(n) in ORCHESTRATION + SERVICES
    }
    assert not wrong, sorted(wrong)


def test_adapters_are_plain_functions_without_prefect():
    wrong = {
        f"{p.relative_to(ROOT)}: {n}"
        for p in modules("adapters")
        for n in imports(p)
        if top(n) in ORCHESTRATION
    }
    assert not wrong, sorted(wrong)


def test_tasks_hold_only_prefect_tasks():
    for path in modules("tasks"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                pytest.fail(
                    f"{path.relative_to(ROOT)}: class {node.name} belongs in churn/ or adapters/"
                )
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                decorators = [ast.unparse(d) for d in node.decorator_list]
                assert any(re.match(r"task\b", d) for d in decorators), (
                    f"{path.relative_to(ROOT)}: {node.name} is not a @task (move it to churn/ or adapters/)"
                )


def test_the_service_imports_only_what_the_bento_ships():
    include = yaml.safe_load((ROOT / "bentofile.yaml").read_text())["include"]
    shipped = {p for pattern in include for p in ROOT.glob(pattern)}
    for path in modules("bentos"):
        for name in imports(path):
            if top(name) in FLOORS:
                module = ROOT / (name.replace(".", "/") + ".py")
                assert top(name) == "churn" and module in shipped, (
                    f"{path.relative_to(ROOT)} imports {name}"
                )


@pytest.mark.parametrize("package", [*FLOORS, "bentos", "benchmarks"])
def test_locations_and_the_model_name_come_from_settings(package):
    for path in modules(package):
        if path == ROOT / "churn" / "settings.py":
            continue
        text = path.read_text()
        assert not re.search(r"\bhome\s*/", text), (
            f"{path.relative_to(ROOT)} builds a path under CHURN_HOME"
        )
        assert '"churn-classifier"' not in text, (
            f"{path.relative_to(ROOT)} spells out the model name"
        )
        reads = (
            r"""environ\.get\(["']CHURN_|environ\[["']CHURN_\w+["']\](?!\s*=)|getenv\(["']CHURN_"""
        )
        assert not re.search(reads, text), (
            f"{path.relative_to(ROOT)} reads a CHURN_ variable itself"
        )
