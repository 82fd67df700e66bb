"""Monitoring logic: alert conditions, alert state changes and the retraining decision (pure).

The monitor flow measures a window of the prediction log (adapters/monitoring_window.py); these functions
turn the measurements into conditions, compare them with the alerts already open (one alert when a
condition starts, one when it clears), and decide whether to retrain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from churn.contracts import Drift, LabelMetrics, WindowMeasurement
from churn.params import AlertRules, RetrainPolicy, TrainParams


@dataclass(frozen=True)
class Condition:
    rule: str
    """e.g. ``positive_rate``, ``p99_latency_ms_per_row``, ``drifted_share``, ``psi:<feature>``, ``auc_roc_drop``."""
    breached: bool
    value: float
    limit: float
    """Every rule is an upper bound: breached when ``value`` exceeds it."""
    why: str = ""
    """For a feature: which drift rule judged it (``psi``, or the chi-squared ``test`` with its p-value)."""


@dataclass(frozen=True)
class AlertEvent:
    rule: str
    event: str
    """``fired`` when a condition starts, ``cleared`` when it stops."""
    value: float
    limit: float


def default_window_end(now: datetime, buffered_seconds: float | None) -> datetime:
    """Where a window ends when none is given: now, or with a fleet's log on an object store
    (``buffered_seconds``: the service's CHURN_LOG_FLUSH_SECONDS) that long and a second before,
    since records answered since may still sit in a worker's buffer and a window judged without
    them would never count them. Hourly runs still judge back-to-back windows."""
    if buffered_seconds is None:
        return now
    return now - timedelta(seconds=buffered_seconds + 1)


def conditions(
    window: WindowMeasurement,
    training_auc_roc: float | None,
    rules: AlertRules,
    reference_positive_rate: float | None = None,
) -> list[Condition]:
    """Every rule that can be judged on this window (too few rows, requests or labels: not judged, state kept)."""
    m = window.metrics
    if m.count < rules.min_rows:
        return []
    out = [
        c
        for c in (positive_rate(m.positive_rate, reference_positive_rate, rules),)
        if c is not None
    ]
    if m.requests >= rules.min_latency_requests and m.latency_p99_per_row_ms is not None:
        out.append(
            _above("p99_latency_ms_per_row", m.latency_p99_per_row_ms, rules.max_p99_latency_ms)
        )
    share, features = dataset_drift(window.drift, rules)
    out.append(share)
    out += features
    # this window's own labels once there are enough (a drop shows undiluted), else the look-back's
    judged = (
        window.window_labels
        if window.window_labels.labelled >= rules.min_labelled
        else window.labels
    )
    auc_roc = judged.get("auc_roc")
    if (
        training_auc_roc is not None
        and auc_roc is not None
        and judged.labelled >= rules.min_labelled
    ):
        out.append(_above("auc_roc_drop", training_auc_roc - auc_roc, rules.max_auc_roc_drop))
    return out


def dataset_drift(drift: Drift, rules: AlertRules) -> tuple[Condition, list[Condition]]:
    """The ``drifted_share`` condition and each feature's ``psi:<feature>`` condition (sorted by
    feature), as every judged window gets them: the Evidently report shows exactly these."""
    features = [
        feature_drift(name, value, drift.p_values.get(name), rules)
        for name, value in sorted(drift.psi.items())
    ]
    share = sum(c.breached for c in features) / len(features) if features else 0.0
    return _above("drifted_share", share, rules.max_drifted_share), features


def feature_drift(name: str, psi: float, p_value: float | None, rules: AlertRules) -> Condition:
    """PSI above its limit; or, sample-size aware, a significant chi-squared test on the same bins
    with at least the minimum effect (then the limit the value is held to is ``min_psi``)."""
    rule = rules.feature_drift.get(name, rules.drift)
    if psi > rule.max_psi or p_value is None or p_value >= rule.alpha:
        return Condition(f"psi:{name}", psi > rule.max_psi, psi, rule.max_psi, "psi")
    return Condition(
        f"psi:{name}", psi > rule.min_psi, psi, rule.min_psi, f"test (chi-squared p {p_value:.2g})"
    )


def positive_rate(rate: float, reference: float | None, rules: AlertRules) -> Condition | None:
    """An absolute limit when one is set; else the rate may differ from the reference's by at most
    ``positive_rate_ratio`` either way (a 50% positive class is then as normal as a 5% one)."""
    if rules.max_positive_rate is not None:
        return _above("positive_rate", rate, rules.max_positive_rate)
    if reference is None or reference <= 0:
        return None
    ratio = min(max(rate / reference, reference / rate), 1e6) if rate > 0 else 1e6
    return _above("positive_rate_ratio", ratio, rules.positive_rate_ratio)


def _above(rule: str, value: float, limit: float) -> Condition:
    return Condition(rule, value > limit, value, limit)


def alert_events(
    current: list[Condition], open_rules: set[str], clear_ratio: float = 1.0
) -> list[AlertEvent]:
    """Only changes: a breached rule not yet open fires; an open rule clears once its value is back
    below ``limit * clear_ratio`` (hysteresis, so a value hovering at the limit does not flap)."""
    events = []
    for c in current:
        if c.breached and c.rule not in open_rules:
            events.append(AlertEvent(c.rule, "fired", c.value, c.limit))
        elif c.rule in open_rules and c.value <= c.limit * clear_ratio:
            events.append(AlertEvent(c.rule, "cleared", c.value, c.limit))
    return events


def is_breach(current: list[Condition]) -> bool:
    """A window counts toward retraining when the dataset drifted or the AUC dropped."""
    return any(c.breached for c in current if c.rule in ("drifted_share", "auc_roc_drop"))


@dataclass(frozen=True)
class RetrainDecision:
    fire: bool
    reason: str


def retrain_decision(
    recent_breaches: list[bool],
    new_labels: int,
    last_fired: datetime | None,
    now: datetime,
    policy: RetrainPolicy,
) -> RetrainDecision:
    """``recent_breaches``: newest last, including this window. Every reason to hold back is stated."""
    if not policy.enabled:
        return RetrainDecision(False, "retraining is disabled")
    window = recent_breaches[-policy.windows :]
    hits = sum(window)
    seen = f"breach in {hits} of the last {len(window)} windows"
    if hits < policy.breaches:
        return RetrainDecision(False, f"{seen} (needs {policy.breaches} of {policy.windows})")
    if new_labels < policy.min_new_labels:
        return RetrainDecision(
            False,
            f"{seen}, but only {new_labels} matured labels since the champion's data "
            f"(needs {policy.min_new_labels})",
        )
    if last_fired is not None and now - last_fired < timedelta(hours=policy.cooldown_hours):
        return RetrainDecision(
            False,
            f"{seen}, but retraining fired at {last_fired:%Y-%m-%d %H:%M} UTC, "
            f"within the {policy.cooldown_hours:g} h cooldown",
        )
    return RetrainDecision(True, f"{seen} and {new_labels} matured labels")


@dataclass(frozen=True)
class Verdict:
    """What the monitor concluded for one window."""

    conditions: list[Condition]
    events: list[AlertEvent]
    breach: bool
    decision: RetrainDecision
    open_rules: set[str]


def retrain_params(policy: RetrainPolicy, model_name: str) -> TrainParams:
    """The train flow's params for a retrain: the policy's overrides, features rebuilt, a promoted model packaged."""
    return TrainParams(
        **{
            **policy.train_overrides,
            "rebuild_features": True,
            "package": True,
            "model_name": model_name,
        }
    )


@dataclass(frozen=True)
class MonitorResult:
    """What the monitor flow returns (and the CLI prints)."""

    window_start: datetime
    window_end: datetime
    count: int
    malformed: int
    psi: dict[str, float]
    labels: LabelMetrics
    """On the matured labels of the look-back."""
    window_labels: LabelMetrics
    """On the matured labels of this window's predictions."""
    events: list[AlertEvent]
    retrain: RetrainDecision
    retrain_run: str | None
    report: str | None
    open_alerts: list[str] = field(default_factory=list)
    """Alerts still open after this window (fired now or earlier, not cleared)."""
