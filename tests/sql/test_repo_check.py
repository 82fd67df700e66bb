"""`churn repo check` on the built-in repo and on broken copies: each problem is named, in seconds."""

from __future__ import annotations

import shutil

import pytest

from adapters.repo_check import check_repo
from ops.cli import main
from tests.helpers import copy_repo, settings_for


@pytest.fixture
def raw(tmp_path, small_world):
    target = tmp_path / "raw"
    shutil.copytree(small_world, target)
    return target


def statuses(rows) -> dict[str, str]:
    return {r.check: r.status for r in rows}


def test_the_built_in_repo_passes_every_check(tmp_path, raw):
    rows = check_repo(settings_for(tmp_path, raw))
    assert set(statuses(rows).values()) == {"ok"}
    names = [r.check for r in rows]
    assert names[:2] == ["feature repo", "source files"] and "point-in-time guard" in names
    assert {"view customer_profile", "view customer_transactions_90d", "label.sql (sample)"} <= set(
        names
    )


def test_a_view_that_reads_the_future_fails_the_point_in_time_guard(tmp_path, raw):
    repo = copy_repo(tmp_path)
    view = repo / "views" / "customer_transactions_90d.sql"
    view.write_text(
        view.read_text().replace(
            "and p.ingested_at < s.as_of", "and p.ingested_at < s.as_of + interval 30 day"
        )
    )
    rows = {r.check: r for r in check_repo(settings_for(tmp_path, raw, repo))}
    guard = rows["point-in-time guard"]
    assert guard.status == "FAIL"
    assert guard.detail.startswith(
        "views read rows at or after as_of (by event_ts or arrival_ts): customer_transactions_90d ("
    )
    assert "customer_profile" not in guard.detail


def test_string_labels_stop_the_check_at_label_sql(tmp_path, raw):
    repo = copy_repo(tmp_path)
    label = repo / "label.sql"
    label.write_text(
        label.read_text()
        .replace(")::integer as label", ") as label")
        .replace("coalesce(", "case when coalesce(")
        .replace("false\n        ) as label", "false\n        ) then 'Yes' else 'No' end as label")
    )
    rows = check_repo(settings_for(tmp_path, raw, repo))
    assert rows[-1].check == "label.sql (sample)" and rows[-1].status == "FAIL"
    assert rows[-1].detail.startswith(
        f"{repo}/label.sql: label column 'label' is VARCHAR (e.g. 'No', 'Yes')"
    )


def test_a_view_contract_problem_is_named_and_the_others_still_run(tmp_path, raw):
    repo = copy_repo(tmp_path)
    yml = repo / "views" / "customer_profile.yml"
    yml.write_text(
        yml.read_text().replace("max: 120", "max: 30")
    )  # ages above 30 break the declared range
    rows = {r.check: r for r in check_repo(settings_for(tmp_path, raw, repo))}
    assert rows["view customer_profile"].status == "WARN"
    assert (
        "age_years:" in rows["view customer_profile"].detail
        and "values above max 30.0" in rows["view customer_profile"].detail
    )
    assert (
        rows["view customer_support_90d"].status == "ok"
        and rows["point-in-time guard"].status == "ok"
    )


def test_the_command_prints_a_table_and_fails_with_one_error_line(
    tmp_path, raw, monkeypatch, capsys
):
    repo = copy_repo(tmp_path)
    (repo / "views" / "customer_support_90d.sql").write_text("select nonsense from nowhere")
    for key, value in {
        "CHURN_HOME": tmp_path / "home",
        "CHURN_RAW_DIR": raw,
        "CHURN_FEATURE_REPO": repo,
    }.items():
        monkeypatch.setenv(key, str(value))
    assert main(["repo", "check"]) == 1
    out, err = capsys.readouterr()
    assert "view customer_support_90d" in out and "FAIL" in out and "repo check FAILED: " in out
    assert err.startswith("error: view customer_support_90d: view 'customer_support_90d' (")
    assert err.count("\n") == 1
