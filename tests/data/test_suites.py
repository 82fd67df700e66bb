"""The committed suites agree with the metadata they are generated from, and load in GX."""

from __future__ import annotations

import json
import shutil

import pytest

from adapters.feature_engine import load_feature_repo
from adapters.validation import StaleSuiteError, load_suites, suite_path, write_suites
from churn import expectations
from tests.helpers import ROOT, copy_repo

EXPECTATIONS = ROOT / "expectations"


def test_committed_suites_match_their_views_and_sources():
    repo = load_feature_repo(ROOT / "feature_sql")
    for name, generated in expectations.generated_suites(repo).items():
        committed = json.loads(suite_path(EXPECTATIONS, name).read_text())
        assert not expectations.stale(committed, generated), (
            f"{name}: run `churn expectations generate`"
        )
        ours = [e for e in committed["expectations"] if e["meta"].get("generated")]
        assert ours == generated["expectations"], (
            f"{name}: generated expectations were edited by hand"
        )


def test_every_suite_loads_as_a_gx_suite():
    import great_expectations as gx

    for path in sorted(EXPECTATIONS.glob("*.json")):
        body = json.loads(path.read_text())
        suite = gx.ExpectationSuite(**body)
        assert suite.name == path.stem and len(suite.expectations) == len(body["expectations"])


def test_regenerating_keeps_hand_tuned_expectations(tmp_path):
    target = tmp_path / "expectations"
    shutil.copytree(EXPECTATIONS, target)
    before = {p.name: p.read_text() for p in target.glob("*.json")}
    write_suites(load_feature_repo(ROOT / "feature_sql"), target)
    assert {p.name: p.read_text() for p in target.glob("*.json")} == before
    tuned = [
        e
        for e in json.loads((target / "source.transactions.json").read_text())["expectations"]
        if not e["meta"].get("generated")
    ]
    assert any(
        e["kwargs"].get("column") == "amount" and e["kwargs"].get("min_value") == 0 for e in tuned
    )


def test_a_view_whose_metadata_changed_makes_its_suite_stale(tmp_path):
    repo_dir = copy_repo(tmp_path)
    yml = repo_dir / "views" / "customer_profile.yml"
    yml.write_text(
        yml.read_text().replace("nullable: false, min: 0}", "nullable: false, min: 1}", 1)
    )
    with pytest.raises(StaleSuiteError, match="training_set.json: generated from other metadata"):
        load_suites(load_feature_repo(repo_dir), EXPECTATIONS)


def test_a_repo_without_suite_files_gets_generated_suites(tmp_path):
    suites, generated = load_suites(load_feature_repo(ROOT / "feature_sql"), tmp_path / "none")
    assert set(generated) == set(suites) and "source.events" in suites
