from __future__ import annotations

from datetime import datetime

import pytest

from churn.featurestore import (
    FeatureRepoError,
    SpineSpec,
    as_of_schedule,
    build_repo,
    dtype_accepts,
    online_as_of,
    parse_store_config,
    parse_view,
)

CONFIG = """
entity: account_id
sources:
  accounts: {path: a.parquet, event_ts: opened_at, columns: {account_id: int64, opened_at: timestamp}}
"""
VIEW_YML = """
name: account_age
entity: account_id
description: age of the account
columns:
  - {name: age_days, dtype: int64, description: days open}
"""


def test_config_and_view_parse():
    config = parse_store_config(CONFIG)
    view = parse_view("account_age", "select 1", VIEW_YML, "views/account_age")
    repo = build_repo(config, "select 1", "select 1", [view], "repo")
    assert [c.name for c in repo.feature_columns] == ["age_days"]
    assert set(repo.sql_hashes()) == {"account_age", "population", "label"}
    assert len(view.sql_hash) == 16


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("entity: x\nsources: {}", "sources: .*at least 1"),
        (
            CONFIG.replace("event_ts: opened_at", "event_ts: nope"),
            "event_ts 'nope' must be a declared timestamp",
        ),
        (
            CONFIG.replace("account_id: int64, ", ""),
            "does not declare the entity column 'account_id'",
        ),
        (CONFIG.replace("timestamp}", "datetime}"), "opened_at: Input should be 'int64'"),
        (CONFIG.replace(", event_ts: opened_at", ""), "set spine.snapshot_at for snapshot data"),
        ("- a list", "expected a mapping"),
    ],
)
def test_config_errors_name_the_field(text, message):
    with pytest.raises(FeatureRepoError, match=message):
        parse_store_config(text)


def test_view_entity_and_column_collisions():
    config = parse_store_config(CONFIG)
    view = parse_view("account_age", "select 1", VIEW_YML, "views/account_age")
    twin = parse_view(
        "account_twin",
        "select 1",
        VIEW_YML.replace("account_age", "account_twin"),
        "views/account_twin",
    )
    with pytest.raises(FeatureRepoError, match="'age_days' is also produced by view 'account_age'"):
        build_repo(config, "", "", [view, twin], "repo")
    other = parse_view(
        "x",
        "select 1",
        VIEW_YML.replace("account_age", "x").replace("entity: account_id", "entity: user_id"),
        "views/x",
    )
    with pytest.raises(FeatureRepoError, match="entity 'user_id' differs"):
        build_repo(config, "", "", [other], "repo")
    reserved = parse_view(
        "y",
        "select 1",
        VIEW_YML.replace("account_age", "y").replace("age_days", "as_of"),
        "views/y",
    )
    with pytest.raises(FeatureRepoError, match="'as_of' is reserved"):
        build_repo(config, "", "", [reserved], "repo")


def test_view_yml_errors():
    with pytest.raises(
        FeatureRepoError, match=r"views/v\.yml: invalid\n  columns\.0\.name: .*snake_case"
    ):
        parse_view(
            "v",
            "select 1",
            VIEW_YML.replace("account_age", "v").replace("age_days", "AgeDays"),
            "views/v",
        )
    with pytest.raises(FeatureRepoError, match="empty SQL"):
        parse_view("account_age", "  \n", VIEW_YML, "views/account_age")


@pytest.mark.parametrize(
    ("dtype", "duck", "ok"),
    [
        ("int64", "INTEGER", True),
        ("int64", "DOUBLE", False),
        ("float64", "BIGINT", True),
        ("float64", "DECIMAL(10,2)", True),
        ("str", "VARCHAR", True),
        ("str", "BIGINT", False),
        ("timestamp", "TIMESTAMP WITH TIME ZONE", True),
        ("timestamp", "DATE", False),
        ("bool", "BOOLEAN", True),
    ],
)
def test_dtype_families(dtype, duck, ok):
    assert dtype_accepts(dtype, duck) is ok


def test_schedule_defaults_from_data():
    spine = SpineSpec(every_days=30, warmup_days=90, horizon_days=30)
    dates = as_of_schedule(spine, datetime(2025, 1, 1, 7, 30), datetime(2025, 12, 31))
    assert dates[0] == datetime(2025, 4, 1)
    assert dates[-1] <= datetime(2025, 12, 1)
    assert all((b - a).days == 30 for a, b in zip(dates, dates[1:]))


def test_schedule_explicit_and_empty():
    spine = SpineSpec(
        first_as_of=datetime(2025, 1, 1), last_as_of=datetime(2025, 1, 21), every_days=10
    )
    assert as_of_schedule(spine, datetime(2020, 1, 1), datetime(2030, 1, 1)) == [
        datetime(2025, 1, 1),
        datetime(2025, 1, 11),
        datetime(2025, 1, 21),
    ]
    with pytest.raises(FeatureRepoError, match="empty as-of schedule"):
        as_of_schedule(SpineSpec(), datetime(2025, 1, 1), datetime(2025, 2, 1))


def test_snapshot_and_online_as_of():
    snap = SpineSpec(snapshot_at=datetime(2024, 6, 30))
    assert as_of_schedule(snap, datetime(2000, 1, 1), datetime(2000, 1, 1)) == [
        datetime(2024, 6, 30)
    ]
    assert online_as_of(snap, datetime(2030, 1, 1)) == datetime(2024, 6, 30)
    assert online_as_of(SpineSpec(), datetime(2025, 3, 4, 15, 0)) == datetime(2025, 3, 5)


def test_calendar_month_schedule_starts_on_the_first_after_warm_up():
    spine = SpineSpec(every_months=1, warmup_days=20, horizon_days=90)
    dates = as_of_schedule(spine, datetime(2024, 1, 15, 9, 30), datetime(2024, 12, 31))
    assert dates[0] == datetime(2024, 3, 1) and dates[-1] == datetime(2024, 10, 1)
    assert all(d.day == 1 and d.hour == 0 for d in dates) and len(dates) == 8
    quarterly = as_of_schedule(
        SpineSpec(every_months=3, first_as_of=datetime(2024, 1, 31)),
        datetime(2024, 1, 1),
        datetime(2025, 1, 1),
    )
    assert quarterly == [
        datetime(2024, 1, 31),
        datetime(2024, 4, 30),
        datetime(2024, 7, 31),
        datetime(2024, 10, 31),
    ]


def test_features_params_override_the_cadence():
    from churn.params import FeaturesParams

    repo_spine = SpineSpec(every_months=1)
    assert FeaturesParams(every_days=7).spine(repo_spine).every_months is None
    assert FeaturesParams(every_months=2).spine(SpineSpec()).every_months == 2
    with pytest.raises(ValueError, match="set every_days or every_months, not both"):
        FeaturesParams(every_days=7, every_months=1)


def test_a_feature_cannot_be_a_timestamp():
    from churn.featurestore import ColumnSpec

    with pytest.raises(
        ValueError, match="a feature must be int64, float64, str or bool, not timestamp"
    ):
        ColumnSpec(name="last_seen", dtype="timestamp", description="when")
    assert ColumnSpec(name="flag", dtype="bool", description="yes or no").dtype == "bool"
