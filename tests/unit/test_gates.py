from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from churn import drift, gates
from churn.contracts import ChampionScore, FeatureDrift, Latency, Timing
from churn.params import GateParams


def psi_by_hand(p, q):
    return sum((qi - pi) * math.log(qi / pi) for pi, qi in zip(p, q))


def test_psi_from_counts_matches_the_formula():
    ref, cur = np.array([50, 30, 20]), np.array([30, 30, 40])
    assert drift.psi_from_counts(ref, cur) == pytest.approx(
        psi_by_hand([0.5, 0.3, 0.2], [0.3, 0.3, 0.4])
    )
    assert drift.psi_from_counts(ref, ref * 3) == pytest.approx(0.0)


def test_empty_bins_are_smoothed_not_infinite():
    eps = 1e-4
    value = drift.psi_from_counts(np.array([10, 0]), np.array([5, 5]), eps=eps)
    p = np.array([1.0, eps]) / (1 + eps)
    assert value == pytest.approx(psi_by_hand(p, [0.5, 0.5]))
    assert math.isfinite(value)


def test_numeric_psi_uses_reference_quantile_bins_and_a_missing_bin():
    reference = pd.Series([1.0, 2.0, 3.0, 4.0])
    edges = drift.quantile_edges(reference.to_numpy(), bins=2)
    assert edges.tolist() == [2.5]
    current = pd.Series([1.0, 1.5, 2.0, np.nan])
    assert drift.numeric_bin_counts(current.to_numpy(), edges).tolist() == [3, 0, 1]
    # reference shares [0.5, 0.5, 0], current [0.75, 0, 0.25]: every empty bin floored at eps
    eps = 1e-4
    p = np.array([0.5, 0.5, eps])
    p /= p.sum()
    q = np.array([0.75, eps, 0.25])
    q /= q.sum()
    assert drift.population_stability_index(reference, current, bins=2) == pytest.approx(
        psi_by_hand(p, q)
    )


def test_categorical_psi_has_levels_an_unseen_bin_and_a_missing_bin():
    reference = pd.Series(["a", "a", "b", "b"])
    current = pd.Series(["a", "c", "c", None])
    assert drift.categorical_bin_counts(current, ["a", "b"]).tolist() == [1, 0, 2, 1]
    eps = 1e-4
    p = np.array([0.5, 0.5, eps, eps])
    p /= p.sum()
    q = np.array([0.25, eps, 0.5, 0.25])
    q /= q.sum()
    assert drift.population_stability_index(reference, current) == pytest.approx(psi_by_hand(p, q))


def test_identical_and_shifted_distributions():
    rng = np.random.default_rng(0)
    base = pd.Series(rng.normal(size=20_000))
    assert drift.population_stability_index(base, pd.Series(rng.normal(size=20_000))) < 0.01
    assert drift.population_stability_index(base, pd.Series(rng.normal(1.0, 1.0, 20_000))) > 0.25


def test_minimum_and_maximum_checks_and_warn_mode():
    assert gates.at_least("performance", "auc_roc", 0.80, 0.75, 0.02).status == "PASS"
    assert gates.at_least("performance", "auc_roc", 0.74, 0.75, 0.02).status == "WARN"
    failing = gates.at_least("performance", "auc_roc", 0.70, 0.75, 0.02)
    assert failing.status == "FAIL"
    warned = gates.apply_mode(failing, "warn")
    assert warned.status == "WARN" and "would fail" in warned.message
    assert gates.at_most("drift", "psi_x", 0.05, 0.25, warn_at=0.1).status == "PASS"
    assert gates.at_most("drift", "psi_x", 0.2, 0.25, warn_at=0.1).status == "WARN"
    assert gates.at_most("drift", "psi_x", 0.3, 0.25, warn_at=0.1).status == "FAIL"


def test_regression_against_champion():
    assert gates.no_regression("auc_roc", 0.80, None, 0.01).status == "SKIP"
    assert "no champion yet" in gates.no_regression("auc_roc", 0.80, None, 0.01).message
    assert gates.no_regression("auc_roc", 0.80, 0.79, 0.01).status == "PASS"
    assert gates.no_regression("auc_roc", 0.785, 0.79, 0.01).status == "WARN"
    assert gates.no_regression("auc_roc", 0.70, 0.79, 0.01).status == "FAIL"


def timing(p50: float, p99: float, wall_p99: float | None = None) -> Timing:
    return Timing(
        cpu_p50=p50, cpu_p99=p99, wall_p50=p50, wall_p99=p99 if wall_p99 is None else wall_p99
    )


def _report(**overrides):
    kwargs = dict(
        model_name="m",
        challenger_version="2",
        challenger_metrics={"auc_roc": 0.82, "pr_auc": 0.4, "recall": 0.5, "f1": 0.4},
        champion=ChampionScore("1", {"auc_roc": 0.81, "pr_auc": 0.38, "recall": 0.5, "f1": 0.4}),
        latency=Latency(timing(2, 5), timing(10, 20), batch_rows=1000, rounds=5),
        drift=FeatureDrift(
            {"x": 0.01, "y": 0.15}, {}, "100 online rows vs 100 training rows as of 2025-01-01"
        ),
        slices={"plan": {"a": 0.8, "b": 0.78}},
    )
    params = overrides.pop("params", GateParams())
    return gates.evaluate_gates(params, **{**kwargs, **overrides})


def test_report_approves_a_good_challenger_with_the_seed_format():
    report = _report()
    assert report.approved and report.decision == "APPROVED"
    text = report.to_text()
    assert "[WARN] drift: y PSI 0.1500" in text and "[PASS] performance: auc_roc: 0.8200" in text
    assert (
        text.splitlines()[-3]
        == f"Results: {report.counts['PASS']} passed, 1 warnings, 0 failed, 0 skipped"
    )
    assert "Overall: APPROVED" in text
    assert report.to_dict()["checks"][0]["gate"] == "performance"


def test_any_failure_rejects_unless_its_gate_is_in_warn_mode():
    drifted = _report(drift=FeatureDrift({"x": 0.9}, {}, "compared"))
    assert drifted.decision == "REJECTED" and drifted.counts["FAIL"] == 1
    relaxed = _report(
        drift=FeatureDrift({"x": 0.9}, {}, "compared"), params=GateParams(drift={"mode": "warn"})
    )
    assert relaxed.decision == "APPROVED"
    gap = _report(slices={"plan": {"a": 0.9, "b": 0.6}})
    assert gap.decision == "REJECTED" and "plan AUC gap 0.3000" in gap.to_text()
    unscorable = _report(
        champion=ChampionScore(
            "1", note="champion v1 needs features missing from the current holdout: ['z']"
        )
    )
    assert unscorable.decision == "REJECTED"


def test_a_report_read_back_from_its_json_decides_the_same():
    import json

    for report in (_report(), _report(drift=FeatureDrift({"x": 0.9}, {}, "compared"))):
        stored = json.loads(json.dumps(report.to_dict()))
        assert gates.GateReport.from_dict(stored) == report
    stored["decision"] = "APPROVED"  # the last one was rejected
    with pytest.raises(ValueError, match="says APPROVED but its checks say REJECTED"):
        gates.GateReport.from_dict(stored)


def test_a_check_that_compared_nothing_says_skip_and_why():
    first = _report(
        champion=ChampionScore(None),
        slices={"plan": {"a": 0.8}},
        drift=FeatureDrift({"x": 0.01}, {"tenure_days": "grows with time"}, "compared"),
    )
    skipped = {c.name: c.message for c in first.checks if c.status == "SKIP"}
    assert set(skipped) == {"auc_roc", "pr_auc", "auc_gap_plan", "psi_tenure_days"}
    assert (
        "no champion yet" in skipped["auc_roc"]
        and "fewer than two slices" in skipped["auc_gap_plan"]
    )
    assert skipped["psi_tenure_days"] == "tenure_days: excluded: grows with time"
    assert first.counts["SKIP"] == 4 and first.approved  # nothing compared is not a failure
    assert "4 skipped" in first.to_text() and "4 skipped" in first.to_markdown()
    assert first.to_dict()["counts"] == {
        "PASS": first.counts["PASS"],
        "WARN": 0,
        "FAIL": 0,
        "SKIP": 4,
    }
    nothing = _report(slices={}, drift=FeatureDrift({}, {}, "0 online rows"))
    assert {(c.gate, c.status) for c in nothing.checks if c.gate in ("slices", "drift")} == {
        ("slices", "SKIP"),
        ("drift", "SKIP"),
    }


def test_latency_is_judged_on_cpu_time_and_says_when_the_machine_was_busy():
    busy = Latency(
        timing(2, 5, wall_p99=400), timing(10, 20, wall_p99=900), batch_rows=1000, rounds=5
    )
    report = _report(latency=busy)
    checks = {c.name: c for c in report.checks if c.gate == "latency"}
    assert checks["p99_single_row"].status == "PASS" and checks["p99_batch_1000"].status == "PASS"
    assert "the machine was busy: wall time 80.0x CPU time" in checks["p99_single_row"].message
    assert "the machine was busy: wall time 45.0x CPU time" in checks["p99_batch_1000"].message
    slow = _report(latency=Latency(timing(60, 80), timing(10, 20), batch_rows=1000, rounds=5))
    failed = next(c for c in slow.checks if c.name == "p99_single_row")
    assert (
        failed.status == "FAIL"
        and "busy" not in failed.message
        and "best of 5 rounds" in failed.message
    )


def test_time_calls_takes_the_best_round_and_measures_cpu_beside_wall():
    import time

    calls = []

    def score(
        rows,
    ):  # the warm-up and the first two rounds sleep 50 ms each call; the last two return at once
        calls.append(1)
        if len(calls) <= 11:
            time.sleep(0.05)

    timed = gates.time_calls(score, [[[1.0]]] * 5, rounds=4)
    assert len(calls) == 1 + 4 * 5
    assert timed.wall_p99 < 50  # a quiet round exists, and its p99 is the one taken
    assert timed.cpu_p99 < 50  # and sleeping costs no CPU time


def test_drift_compares_the_snapshot_with_the_latest_training_dates():
    rng = np.random.default_rng(0)
    dates = pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01"])
    # a feature that grows with time: every row's value is its date's month
    training = pd.DataFrame(
        {
            "as_of": np.repeat(dates, 400),
            "tenure": np.repeat([1.0, 2.0, 3.0], 400) + rng.random(1200) * 0.1,
            "plan": rng.choice(["a", "b"], 1200),
        }
    )
    online = pd.DataFrame(
        {"tenure": 3.0 + rng.random(400) * 0.1, "plan": rng.choice(["a", "b"], 400)}
    )
    latest = gates.feature_drift(
        training, online, {}, ["tenure", "plan"], bins=10, reference_dates=1
    )
    assert latest.psi["tenure"] < 0.1 and "as of 2025-03-01" in latest.compared
    history = gates.feature_drift(
        training, online, {}, ["tenure", "plan"], bins=10, reference_dates=3
    )
    assert history.psi["tenure"] > 1.0 and "2025-01-01..2025-03-01" in history.compared
    excluded = gates.feature_drift(
        training, online, {"tenure": "grows with time"}, ["tenure", "plan"], 10, 3
    )
    assert set(excluded.psi) == {"plan"} and excluded.excluded == {"tenure": "grows with time"}


def test_the_chi_squared_test_sees_a_shift_the_psi_limit_misses_on_a_large_sample():
    ref = np.array([2500, 2500, 2500, 2500])
    shifted = np.array([3250, 2250, 2250, 2250])  # one level +30%: PSI ~0.07 on 10,000 rows
    assert drift.psi_from_counts(ref, shifted) < 0.1 < 1.0
    assert drift.chi_squared_p_value(ref, shifted) < 1e-20
    assert (
        drift.chi_squared_p_value(ref / 100, shifted / 100) > 1e-3
    )  # the same shift on 100 rows: not significant
    assert drift.chi_squared_p_value(ref, ref) == pytest.approx(1.0)
    assert drift.chi_squared_p_value(np.array([10, 0]), np.array([0, 0])) == 1.0  # nothing to test
