from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from churn import monitoring
from churn.contracts import Drift, LabelMetrics, WindowMeasurement, WindowMetrics, WindowRead
from churn.params import AlertRules, RetrainPolicy

RULES = AlertRules(
    min_rows=10,
    max_positive_rate=0.5,
    max_p99_latency_ms=100,
    min_latency_requests=50,
    max_drifted_share=0.3,
    drift={"max_psi": 0.25},
    max_auc_roc_drop=0.05,
    min_labelled=20,
)


def window(
    psi=None,
    count=100,
    positive_rate=0.2,
    latency_p99_ms=20.0,
    labelled=0,
    auc_roc=None,
    p_values=None,
    requests=100,
    window_labelled=0,
    window_auc_roc=None,
) -> WindowMeasurement:
    metrics = WindowMetrics(
        count, positive_rate, 0.2, 0.1, 5.0, latency_p99_ms, {"1": count}, requests, latency_p99_ms
    )
    labels = LabelMetrics(labelled, {} if auc_roc is None else {"auc_roc": auc_roc})
    own = LabelMetrics(
        window_labelled, {} if window_auc_roc is None else {"auc_roc": window_auc_roc}
    )
    drift = Drift(psi or {}, {}, None, p_values or {})
    return WindowMeasurement(WindowRead(1, 0), metrics, drift, labels, window_labels=own)


def rules_of(conditions):
    return {c.rule: c for c in conditions}


def test_conditions_cover_every_rule_that_can_be_judged():
    psi = {"a": 0.3, "b": 0.1, "c": 0.01}
    got = rules_of(monitoring.conditions(window(psi, labelled=50, auc_roc=0.70), 0.80, RULES))
    assert set(got) == {
        "positive_rate",
        "p99_latency_ms_per_row",
        "drifted_share",
        "psi:a",
        "psi:b",
        "psi:c",
        "auc_roc_drop",
    }
    assert got["psi:a"].breached and not got["psi:b"].breached
    assert got["drifted_share"].value == pytest.approx(1 / 3) and got["drifted_share"].breached
    assert got["auc_roc_drop"].value == pytest.approx(0.10) and got["auc_roc_drop"].breached
    assert not got["positive_rate"].breached and not got["p99_latency_ms_per_row"].breached


def test_small_windows_and_few_labels_are_not_judged():
    assert monitoring.conditions(window({"a": 9.0}, count=5), 0.8, RULES) == []
    few_labels = rules_of(monitoring.conditions(window(labelled=19, auc_roc=0.1), 0.8, RULES))
    assert "auc_roc_drop" not in few_labels
    no_training_auc = rules_of(monitoring.conditions(window(labelled=50, auc_roc=0.1), None, RULES))
    assert "auc_roc_drop" not in no_training_auc


def test_one_alert_when_a_condition_starts_and_one_when_it_clears():
    high = monitoring.conditions(window(positive_rate=0.9), None, RULES)
    first = monitoring.alert_events(high, set())
    assert [(e.rule, e.event) for e in first] == [("positive_rate", "fired")]
    assert monitoring.alert_events(high, {"positive_rate"}) == []  # still high: no storm
    low = monitoring.conditions(window(), None, RULES)
    assert [(e.rule, e.event) for e in monitoring.alert_events(low, {"positive_rate"})] == [
        ("positive_rate", "cleared")
    ]
    assert (
        monitoring.alert_events([], {"positive_rate"}) == []
    )  # an unjudged window keeps the alert open


NOW = datetime(2026, 6, 1, 12)


@pytest.mark.parametrize(
    ("breaches", "labels", "last_fired", "fire", "reason"),
    [
        (
            [True, False, True],
            600,
            None,
            True,
            "breach in 2 of the last 3 windows and 600 matured labels",
        ),
        (
            [False, False, True],
            600,
            None,
            False,
            "breach in 1 of the last 3 windows (needs 2 of 3)",
        ),
        ([True, True, True, False, False], 600, None, False, "breach in 1 of the last 3 windows"),
        ([True, True], 100, None, False, "only 100 matured labels"),
        ([True, True], 600, NOW - timedelta(hours=2), False, "within the 24 h cooldown"),
        ([True, True], 600, NOW - timedelta(hours=30), True, "breach in 2 of the last 2 windows"),
    ],
)
def test_retrain_decision_states_why(breaches, labels, last_fired, fire, reason):
    decision = monitoring.retrain_decision(
        breaches, labels, last_fired, NOW, RetrainPolicy(breaches=2, windows=3, min_new_labels=500)
    )
    assert decision.fire is fire and reason in decision.reason


def test_breach_is_drift_or_auc_roc_drop_only():
    latency_only = monitoring.conditions(window(latency_p99_ms=999), None, RULES)
    assert rules_of(latency_only)["p99_latency_ms_per_row"].breached
    assert not monitoring.is_breach(latency_only)
    assert monitoring.is_breach(monitoring.conditions(window({"a": 1.0, "b": 1.0}), None, RULES))


def test_policy_rejects_impossible_settings():
    with pytest.raises(ValueError, match="breaches"):
        RetrainPolicy(breaches=4, windows=3)


def test_an_open_alert_clears_only_well_below_its_limit():
    hovering = monitoring.conditions(window(positive_rate=0.48), None, RULES)
    assert monitoring.alert_events(hovering, {"positive_rate"}, clear_ratio=0.8) == []
    back = monitoring.conditions(window(positive_rate=0.39), None, RULES)
    assert [e.event for e in monitoring.alert_events(back, {"positive_rate"}, clear_ratio=0.8)] == [
        "cleared"
    ]


def test_retrain_params_carry_the_overrides_and_always_rebuild_and_package():
    params = monitoring.retrain_params(RetrainPolicy(), "my-model")
    assert params.rebuild_features and params.package and params.model_name == "my-model"
    assert params.gates.drift.mode == "warn" and params.gates.performance.mode == "enforce"
    with pytest.raises(ValueError, match="estimator"):
        monitoring.retrain_params(
            RetrainPolicy(train_overrides={"estimator": {"kind": "svm"}}), "m"
        )


def test_a_real_shift_of_a_meaningful_size_drifts_even_under_the_psi_limit():
    # PSI 0.2 with chi-squared p 1e-90 (a large window): the test rule fires and says so
    got = rules_of(
        monitoring.conditions(
            window(
                {"grade": 0.2, "noise": 0.05, "tiny": 0.2},
                p_values={"grade": 1e-90, "noise": 1e-9, "tiny": 0.3},
            ),
            None,
            RULES,
        )
    )
    assert got["psi:grade"].breached and got["psi:grade"].why.startswith(
        "test (chi-squared p 1e-90"
    )
    assert (
        got["psi:grade"].limit == 0.1
    )  # held to the minimum effect, so it clears below 0.1 x clear_ratio
    assert not got["psi:noise"].breached  # significant but too small to matter
    assert (
        not got["psi:tiny"].breached and got["psi:tiny"].why == "psi"
    )  # not significant (a small window)
    per_feature = AlertRules(min_rows=10, feature_drift={"grade": {"max_psi": 0.5, "min_psi": 0.3}})
    assert not rules_of(
        monitoring.conditions(window({"grade": 0.2}, p_values={"grade": 1e-90}), None, per_feature)
    )["psi:grade"].breached


def test_the_positive_rate_is_judged_against_the_reference_by_default():
    rules = AlertRules(min_rows=10)
    half = rules_of(
        monitoring.conditions(window(positive_rate=0.5), None, rules, reference_positive_rate=0.48)
    )
    assert not half["positive_rate_ratio"].breached  # a 50% class at 50% is normal
    tripled = rules_of(
        monitoring.conditions(window(positive_rate=0.15), None, rules, reference_positive_rate=0.05)
    )
    assert tripled["positive_rate_ratio"].breached and tripled[
        "positive_rate_ratio"
    ].value == pytest.approx(3.0)
    collapsed = rules_of(
        monitoring.conditions(window(positive_rate=0.0), None, rules, reference_positive_rate=0.3)
    )
    assert collapsed["positive_rate_ratio"].breached
    assert "positive_rate_ratio" not in rules_of(
        monitoring.conditions(window(), None, rules)
    )  # no reference rate


def test_latency_is_judged_per_row_and_only_over_enough_requests():
    few = rules_of(monitoring.conditions(window(latency_p99_ms=999, requests=3), None, RULES))
    assert "p99_latency_ms_per_row" not in few


def test_this_windows_own_labels_judge_the_auc_drop_once_there_are_enough():
    diluted = window(labelled=500, auc_roc=0.79, window_labelled=100, window_auc_roc=0.70)
    got = rules_of(monitoring.conditions(diluted, 0.80, RULES))
    assert got["auc_roc_drop"].value == pytest.approx(0.10) and got["auc_roc_drop"].breached
    too_few = window(labelled=500, auc_roc=0.79, window_labelled=10, window_auc_roc=0.5)
    assert rules_of(monitoring.conditions(too_few, 0.80, RULES))[
        "auc_roc_drop"
    ].value == pytest.approx(0.01)


def test_a_window_over_a_fleets_log_ends_before_what_workers_may_still_buffer():
    now = datetime(2030, 1, 1, 12, 0, 0)
    assert monitoring.default_window_end(now, None) == now  # files: written before the answer
    assert monitoring.default_window_end(now, 2.0) == now - timedelta(seconds=3)
    assert monitoring.default_window_end(now, 0.0) == now - timedelta(seconds=1)
