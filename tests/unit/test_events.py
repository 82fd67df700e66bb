"""How runs end where the user looks: state names, messages and tags per outcome (pure)."""

from __future__ import annotations

from churn import events


def test_a_rejected_challenger_ends_named_rejected_with_the_failed_checks():
    name, message, tags = events.train_outcome(
        "attrition", "7", "REJECTED", False, ["regression: auc_roc", "latency", "a", "b", "c", "d"]
    )
    assert name == "Rejected" and tags == ["rejected"]
    assert (
        message.startswith("attrition v7 REJECTED: regression: auc_roc, latency")
        and "..." in message
    )
    assert events.train_outcome("m", "2", "APPROVED", True, [])[0:3:2] == (
        "Completed",
        ["approved", "promoted"],
    )
    assert "promote=false" in events.train_outcome("m", "2", "APPROVED", False, [])[1]


def test_monitor_runs_are_named_by_what_is_open_and_what_was_requested():
    assert events.monitor_outcome([], [], False, False) == ("Completed", "quiet: no alert open", [])
    name, message, tags = events.monitor_outcome(["psi:tenure"], ["psi:tenure"], False, False)
    assert (name, tags) == ("Alerting", ["alerting"]) and "1 fired in this window" in message
    assert events.monitor_outcome(["drifted_share"], [], True, False)[0::2] == (
        "Retraining",
        ["alerting", "retraining"],
    )
    assert "could not start" in events.monitor_outcome([], [], True, True)[1]


def test_open_alerts_follow_fired_and_cleared_changes_in_order():
    assert events.open_after({"a", "b"}, [("b", "cleared"), ("c", "fired")]) == ["a", "c"]
    assert events.open_after(set(), [("x", "fired"), ("x", "cleared")]) == []
    assert events.model_resource("attrition")["prefect.resource.id"] == "churn.model.attrition"
