"""Monitoring logic: alert conditions, alert state changes and the retraining decision (pure).

The monitor flow measures a window of the prediction log (adapters/monitoring_window.py); these functions
turn the measurements into conditions, compare them with the alerts already open (one alert when a
condition starts, one when it clears), and decide whether to retrain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from churn.contracts import LabelMetrics, WindowMeasurement
from churn.params import AlertRules, RetrainPolicy, TrainParams


@dataclass(frozen=True)
class Condition:
    rule: str
    """e.g. ``positive_rate``, ``p99_latency_ms``, ``drifted_share``, ``psi:<feature>``, ``auc_roc_drop``."""
    breached: bool
    value: float
    limit: float
    """Every rule is an upper bound: breached when ``value`` exceeds it."""


@dataclass(frozen=True)
class AlertEvent:
    rule: str
    event: str
    """``fired`` when a condition starts, ``cleared`` when it stops."""
    value: float
    limit: float


def conditions(
    window: WindowMeasurement, training_auc_roc: float | None, rules: AlertRules
) -> list[Condition]:
    """Every rule that can be judged on this window (too few rows or labels: not judged, state kept)."""
    if window.metrics.count < rules.min_rows:
        return []
    psi = window.drift.psi
    out = [
        _above("positive_rate", window.metrics.positive_rate, rules.max_positive_rate),
        _above("p99_latency_ms", window.metrics.latency_p99_ms, rules.max_p99_latency_ms),
        _above("drifted_share", drifted_share(psi, rules), rules.max_drifted_share),
    ]
    out += [_above(f"psi:{name}", value, rules.max_psi) for name, value in sorted(psi.items())]
    auc_roc = window.labels.get("auc_roc")
    if (
        training_auc_roc is not None
        and auc_roc is not None
        and window.labels.labelled >= rules.min_labelled
    ):
        out.append(_above("auc_roc_drop", training_auc_roc - auc_roc, rules.max_auc_roc_drop))
    return out


def _above(rule: str, value: float, limit: float) -> Condition:
    return Condition(rule, value > limit, value, limit)


def drifted_share(psi: dict[str, float], rules: AlertRules) -> float:
    return sum(v > rules.max_psi for v in psi.values()) / len(psi) if psi else 0.0


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
    events: list[AlertEvent]
    retrain: RetrainDecision
    retrain_run: str | None
    report: str | None
