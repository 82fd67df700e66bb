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
    max_drifted_share=0.3,
    max_psi=0.25,
    max_auc_roc_drop=0.05,
    min_labelled=20,
)


def window(
    psi=None, count=100, positive_rate=0.2, latency_p99_ms=20.0, labelled=0, auc_roc=None
) -> WindowMeasurement:
    metrics = WindowMetrics(count, positive_rate, 0.2, 0.1, 5.0, latency_p99_ms, {"1": count})
    labels = LabelMetrics(labelled, {} if auc_roc is None else {"auc_roc": auc_roc})
    return WindowMeasurement(WindowRead(1, 0), metrics, Drift(psi or {}, {}, None), labels)


def rules_of(conditions):
    return {c.rule: c for c in conditions}


def test_conditions_cover_every_rule_that_can_be_judged():
    psi = {"a": 0.3, "b": 0.1, "c": 0.01}
    got = rules_of(monitoring.conditions(window(psi, labelled=50, auc_roc=0.70), 0.80, RULES))
    assert set(got) == {
        "positive_rate",
        "p99_latency_ms",
        "drifted_share",
        "psi:a",
        "psi:b",
        "psi:c",
        "auc_roc_drop",
    }
    assert got["psi:a"].breached and not got["psi:b"].breached
    assert got["drifted_share"].value == pytest.approx(1 / 3) and got["drifted_share"].breached
    assert got["auc_roc_drop"].value == pytest.approx(0.10) and got["auc_roc_drop"].breached
    assert not got["positive_rate"].breached and not got["p99_latency_ms"].breached


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
