"""Bad sources, SQL and metadata stop the build with an error naming the file, view and column."""

from __future__ import annotations

import shutil
from datetime import datetime

import pandas as pd
import pytest

from adapters.feature_engine import FeatureBuildError
from churn.featurestore import FeatureRepoError
from tests.helpers import build, copy_repo, settings_for

AS_OF = [datetime(2025, 6, 1), datetime(2025, 7, 1)]


@pytest.fixture
def raw(tmp_path, small_world):
    target = tmp_path / "raw"
    shutil.copytree(small_world, target)
    return target


@pytest.fixture
def repo(tmp_path):
    return copy_repo(tmp_path)


def run(tmp_path, raw, repo, dates=AS_OF):
    return build(settings_for(tmp_path, raw, repo), dates)


def test_missing_source_file(tmp_path, raw, repo):
    (raw / "tickets.parquet").unlink()
    with pytest.raises(
        FeatureBuildError, match=r"source 'tickets': no file matches .*tickets\.parquet"
    ):
        run(tmp_path, raw, repo)


def test_missing_column(tmp_path, raw, repo):
    frame = pd.read_parquet(raw / "transactions.parquet").drop(columns=["amount"])
    frame.to_parquet(raw / "transactions.parquet")
    with pytest.raises(
        FeatureBuildError,
        match=r"source 'transactions' .*missing column 'amount'; expected float64",
    ):
        run(tmp_path, raw, repo)


def test_mistyped_column(tmp_path, raw, repo):
    frame = pd.read_parquet(raw / "transactions.parquet")
    frame["amount"] = frame["amount"].astype(str)
    frame.to_parquet(raw / "transactions.parquet")
    with pytest.raises(
        FeatureBuildError, match=r"column 'amount' has type VARCHAR; expected float64"
    ):
        run(tmp_path, raw, repo)


def test_view_sql_that_fails(tmp_path, raw, repo):
    path = repo / "views" / "customer_support_90d.sql"
    path.write_text(path.read_text().replace("o.priority", "o.severity"))
    with pytest.raises(
        FeatureBuildError,
        match=r"view 'customer_support_90d' \(.*customer_support_90d\.sql\): SQL failed.*severity",
    ):
        run(tmp_path, raw, repo)


def test_view_returning_duplicate_rows(tmp_path, raw, repo):
    path = repo / "views" / "customer_profile.sql"
    path.write_text(
        path.read_text().replace(
            "select * from final", "select * from final union all select * from final"
        )
    )
    with pytest.raises(
        FeatureBuildError, match=r"view 'customer_profile' .*duplicate \(customer_id, as_of\) rows"
    ):
        run(tmp_path, raw, repo)


def test_yml_declares_a_column_the_sql_does_not_return(tmp_path, raw, repo):
    path = repo / "views" / "customer_profile.yml"
    path.write_text(
        path.read_text()
        + "  - {name: lifetime_value_usd, dtype: float64, description: not computed}\n"
    )
    with pytest.raises(
        FeatureBuildError,
        match=r"view 'customer_profile' .*'lifetime_value_usd' is in customer_profile\.yml but not returned",
    ):
        run(tmp_path, raw, repo)


def test_sql_returns_a_column_the_yml_does_not_declare(tmp_path, raw, repo):
    path = repo / "views" / "customer_profile.yml"
    path.write_text(
        "\n".join(l for l in path.read_text().splitlines() if "age_years" not in l) + "\n"
    )
    with pytest.raises(
        FeatureBuildError,
        match=r"column 'age_years' is returned by the SQL but not declared in customer_profile\.yml",
    ):
        run(tmp_path, raw, repo)


def test_yml_dtype_disagrees_with_sql(tmp_path, raw, repo):
    path = repo / "views" / "customer_profile.yml"
    path.write_text(
        path.read_text().replace(
            "{name: plan,            dtype: str", "{name: plan,            dtype: int64"
        )
    )
    with pytest.raises(
        FeatureBuildError,
        match=r"column 'plan' is VARCHAR but customer_profile\.yml declares int64",
    ):
        run(tmp_path, raw, repo)


def test_yml_name_must_match_file(tmp_path, raw, repo):
    path = repo / "views" / "customer_profile.yml"
    path.write_text(path.read_text().replace("name: customer_profile", "name: profile"))
    with pytest.raises(
        FeatureRepoError, match=r"customer_profile\.yml: name 'profile' must equal the file stem"
    ):
        run(tmp_path, raw, repo)


def test_view_without_metadata(tmp_path, raw, repo):
    (repo / "views" / "customer_profile.yml").unlink()
    with pytest.raises(
        FeatureRepoError, match=r"customer_profile\.sql: view has no sibling customer_profile\.yml"
    ):
        run(tmp_path, raw, repo)


def test_empty_spine(tmp_path, raw, repo):
    with pytest.raises(FeatureBuildError, match=r"population\.sql: empty spine"):
        run(tmp_path, raw, repo, dates=[datetime(1990, 1, 1)])


def test_label_outside_zero_one(tmp_path, raw, repo):
    path = repo / "label.sql"
    path.write_text(path.read_text().replace(")::integer as label", ")::integer * 2 as label"))
    with pytest.raises(FeatureBuildError, match=r"label\.sql: label 'label' must be 0 or 1"):
        run(tmp_path, raw, repo)


def test_unknown_key_in_feature_store_yml(tmp_path, raw, repo):
    path = repo / "feature_store.yml"
    path.write_text(path.read_text().replace("  every_days: 30", "  every_day: 30"))
    with pytest.raises(
        FeatureRepoError, match=r"feature_store\.yml: invalid\n  spine\.every_day: Extra inputs"
    ):
        run(tmp_path, raw, repo)


LABEL_TYPES = [  # what label.sql returns instead of 0/1 integers, the type named, examples, the mapping
    (
        "case when {x} then 'Yes' else 'No' end",
        "VARCHAR",
        "'No', 'Yes'",
        'case when "label" = <the positive value>',
    ),
    (
        "case when {x} then '1' else '0' end",
        "VARCHAR",
        "'0', '1'",
        'case when "label" = <the positive value>',
    ),
    ("({x})", "BOOLEAN", "False, True", 'cast("label" as integer) as "label"'),
    (
        "case when {x} then 1.0 else 0.0 end",
        "DECIMAL(2,1)",
        "0.0, 1.0",
        'cast(round("label") as integer)',
    ),
]


@pytest.mark.parametrize(("expression", "dtype", "examples", "how"), LABEL_TYPES)
def test_a_label_that_is_not_integer_says_how_to_map_it(
    tmp_path, raw, repo, expression, dtype, examples, how
):
    path = repo / "label.sql"
    sql = path.read_text()
    end = sql.index(")::integer as label") + len(")::integer as label")
    old = sql[sql.index("coalesce(") : end]
    condition = old.removesuffix("::integer as label")
    path.write_text(sql.replace(old, expression.format(x=condition) + " as label"))
    with pytest.raises(FeatureBuildError) as failure:
        run(tmp_path, raw, repo)
    message = str(failure.value)
    assert message.startswith(f"{repo}/label.sql: label column 'label' is {dtype}")
    assert (
        f"(e.g. {examples}" in message and "it must be 0/1 integers: map it in label.sql" in message
    )
    assert how in message and "\n" not in message


def test_an_entity_of_the_wrong_type_names_population_sql(tmp_path, raw, repo):
    path = repo / "population.sql"
    sql = path.read_text()
    path.write_text(
        sql.replace(
            "select * from final", "select customer_id::varchar as customer_id, as_of from final"
        )
    )
    with pytest.raises(FeatureBuildError) as failure:
        run(tmp_path, raw, repo)
    message = str(failure.value)
    assert message.startswith(
        f"{repo}/population.sql: entity column 'customer_id' is VARCHAR (e.g. '"
    )
    assert "but feature_store.yml declares entity_dtype: int64" in message
    assert 'select cast("customer_id" as bigint)' in message


def test_entity_dtype_must_match_the_sources(tmp_path, raw, repo):
    path = repo / "feature_store.yml"
    path.write_text(path.read_text().replace("entity_dtype: int64", "entity_dtype: str"))
    with pytest.raises(
        FeatureRepoError, match="declares customer_id as int64 but entity_dtype is str"
    ):
        run(tmp_path, raw, repo)
