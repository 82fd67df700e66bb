from __future__ import annotations

import pytest

from churn.serving import RequestError, ServingSchema, check_entity_id, check_features

SCHEMA = ServingSchema(
    "customer_id", "int64", {"logins": "int64", "spend": "float64", "plan": "str"}, 0.3
)


def test_values_come_back_in_model_order_and_nulls_pass():
    assert check_features(SCHEMA, {"plan": "basic", "spend": 1.5, "logins": 3}) == [3, 1.5, "basic"]
    assert check_features(SCHEMA, {"plan": None, "spend": None, "logins": None}) == [
        None,
        None,
        None,
    ]


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ({"plan": "a", "spend": 1.0}, "missing features.logins"),
        ({"plan": "a", "spend": 1.0, "logins": 1, "x": 2}, "unknown features.x"),
        ({"plan": 1, "spend": 1.0, "logins": 1}, "features.plan: expected a string"),
        ({"plan": "a", "spend": "1.0", "logins": 1}, "features.spend: expected a number"),
        ({"plan": "a", "spend": True, "logins": 1}, "features.spend: expected a number, got bool"),
        ({"plan": "a", "spend": float("nan"), "logins": 1}, "features.spend: must be finite"),
        ({"plan": "a", "spend": 1.0, "logins": 1.5}, "features.logins: expected an integer"),
        ([1, 2], "expected an object"),
    ],
)
def test_each_problem_names_its_field(features, message):
    with pytest.raises(RequestError, match=message):
        check_features(SCHEMA, features)


def test_entity_ids():
    assert check_entity_id(SCHEMA, "42", "customer_id") == 42
    assert check_entity_id(SCHEMA, 42, "customer_id") == 42
    with pytest.raises(RequestError, match="customer_ids\\[1\\]: expected an integer id"):
        check_entity_id(SCHEMA, "4x", "customer_ids[1]")
    as_str = ServingSchema("account_ref", "str", {}, 0.5)
    assert check_entity_id(as_str, 7, "id") == "7"


def test_a_bool_feature_takes_json_true_or_false_only():
    schema = ServingSchema("id", "int64", {"flag": "bool", "amount": "float64"}, 0.5)
    assert check_features(schema, {"flag": True, "amount": 2.0}) == [True, 2.0]
    assert check_features(schema, {"flag": None, "amount": 2.0}) == [None, 2.0]
    for wrong in (1, "true", 0.0):
        with pytest.raises(
            RequestError, match=f"features.flag: expected true or false, got {type(wrong).__name__}"
        ):
            check_features(schema, {"flag": wrong, "amount": 2.0})
    with pytest.raises(RequestError, match="features.amount: expected a number, got bool"):
        check_features(schema, {"flag": True, "amount": True})
