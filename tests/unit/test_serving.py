from __future__ import annotations

import pytest

from churn.serving import RequestError, ServingSchema, check_as_of, check_entity_id, check_features

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


BOUNDED = ServingSchema(
    "id",
    "int64",
    {"visits": "int64", "spend": "float64", "plan": "str"},
    0.5,
    bounds={"visits": (0.0, None)},
)


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ({"visits": -1, "spend": 1.0, "plan": "a"}, "features.visits: -1 is outside [0, 1e+12]"),
        (
            {"visits": 2**64, "spend": 1.0, "plan": "a"},
            "features.visits: 18446744073709551616 is outside",
        ),
        (
            {"visits": 1, "spend": 10**400, "plan": "a"},
            "features.spend: <an integer of 401 digits> is outside",
        ),
        (
            {"visits": 1, "spend": 1e308, "plan": "a"},
            "features.spend: 1e+308 is outside [-1e+12, 1e+12]",
        ),
        (
            {"visits": 1, "spend": 1.0, "plan": "x" * 300},
            "features.plan: longer than 256 characters",
        ),
        (
            {"visits": 1, "spend": 1.0, "plan": "a", "y" * 500: 1},
            "unknown features." + "y" * 60 + "...",
        ),
    ],
)
def test_values_far_outside_what_the_model_knows_are_refused_with_a_short_echo(features, message):
    with pytest.raises(RequestError) as failure:
        check_features(BOUNDED, features)
    assert message in str(failure.value) and len(str(failure.value)) < 200


@pytest.mark.parametrize(
    "value", [True, 2**64, -(2**63) - 1, "--5", "²", "①", "1" * 5000, "4x", 1.5, None, [1]]
)
def test_integer_ids_are_64_bit_and_ascii(value):
    with pytest.raises(
        RequestError, match="id: expected an integer id \\(64-bit\\), got "
    ) as failure:
        check_entity_id(SCHEMA, value, "id")
    assert len(str(failure.value)) < 100


def test_string_ids_are_bounded():
    as_str = ServingSchema("ref", "str", {}, 0.5)
    assert (
        check_entity_id(as_str, "a-1", "ref") == "a-1" and check_entity_id(as_str, 7, "ref") == "7"
    )
    for value in ("x" * 300, 10**400, True, 1.5):
        with pytest.raises(RequestError, match="ref: "):
            check_entity_id(as_str, value, "ref")


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00", "1800-01-01", "soon", 5]
)
def test_as_of_outside_the_calendar_we_serve_is_refused(value):
    with pytest.raises(RequestError, match="as_of: "):
        check_as_of(value, "as_of")
    assert check_as_of("2026-01-01T12:00:00+01:00", "as_of") == "2026-01-01T11:00:00"
