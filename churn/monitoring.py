"""Monitoring logic: alert conditions, alert state changes and the retraining decision (pure).

The monitor flow measures a window of the prediction log (tasks/monitoring.py); these functions
turn the measurements into conditions, compare them with the alerts already open (one alert when a
condition starts, one when it clears), and decide whether to retrain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from churn.params import AlertRules, RetrainPolicy


@dataclass(frozen=True)
class Condition:
    rule: str
    """e.g. ``positive_rate``, ``p99_latency_ms``, ``drifted_share``, ``psi:<feature>``, ``auc_drop``."""
    breached: bool
    value: float
    threshold: float


@dataclass(frozen=True)
class AlertEvent:
    rule: str
    event: str
    """``fired`` when a condition starts, ``cleared`` when it stops."""
    value: float
    threshold: float


def conditions(window: dict, psi: dict[str, float], training_auc: float | None, rules: AlertRules) -> list[Condition]:
    """Every rule that can be judged on this window (too few rows or labels: not judged, state kept)."""
    if window["count"] < rules.min_rows:
        return []
    out = [
        _above("positive_rate", window["positive_rate"], rules.max_positive_rate),
        _above("p99_latency_ms", window["latency_p99_ms"], rules.max_p99_latency_ms),
        _above("drifted_share", drifted_share(psi, rules), rules.max_drifted_share),
    ]
    out += [_above(f"psi:{name}", value, rules.max_psi) for name, value in sorted(psi.items())]
    if training_auc is not None and window.get("auc") is not None and window["labelled"] >= rules.min_labelled:
        out.append(_above("auc_drop", training_auc - window["auc"], rules.max_auc_drop))
    return out


def _above(rule: str, value: float, threshold: float) -> Condition:
    """Every rule is an upper bound: breached when the value exceeds its threshold."""
    return Condition(rule, value > threshold, value, threshold)


def drifted_share(psi: dict[str, float], rules: AlertRules) -> float:
    return sum(v > rules.max_psi for v in psi.values()) / len(psi) if psi else 0.0


def alert_events(current: list[Condition], open_rules: set[str], clear_ratio: float = 1.0) -> list[AlertEvent]:
    """Only changes: a breached rule not yet open fires; an open rule clears once its value is back
    below ``threshold * clear_ratio`` (hysteresis, so a value hovering at the threshold does not flap)."""
    events = []
    for c in current:
        if c.breached and c.rule not in open_rules:
            events.append(AlertEvent(c.rule, "fired", c.value, c.threshold))
        elif c.rule in open_rules and c.value <= c.threshold * clear_ratio:
            events.append(AlertEvent(c.rule, "cleared", c.value, c.threshold))
    return events


def is_breach(current: list[Condition]) -> bool:
    """A window counts toward retraining when the dataset drifted or the AUC dropped."""
    return any(c.breached for c in current if c.rule in ("drifted_share", "auc_drop"))


@dataclass(frozen=True)
class RetrainDecision:
    fire: bool
    reason: str


def retrain_decision(recent_breaches: list[bool], new_labels: int, last_fired: datetime | None, now: datetime,
                     policy: RetrainPolicy) -> RetrainDecision:
    """``recent_breaches``: newest last, including this window. Every reason to hold back is stated."""
    if not policy.enabled:
        return RetrainDecision(False, "retraining is disabled")
    window = recent_breaches[-policy.windows:]
    hits = sum(window)
    seen = f"breach in {hits} of the last {len(window)} windows"
    if hits < policy.breaches:
        return RetrainDecision(False, f"{seen} (needs {policy.breaches} of {policy.windows})")
    if new_labels < policy.min_new_labels:
        return RetrainDecision(False, f"{seen}, but only {new_labels} matured labels since the champion's data "
                                      f"(needs {policy.min_new_labels})")
    if last_fired is not None and now - last_fired < timedelta(hours=policy.cooldown_hours):
        return RetrainDecision(False, f"{seen}, but retraining fired at {last_fired:%Y-%m-%d %H:%M} UTC, "
                                      f"within the {policy.cooldown_hours:g} h cooldown")
    return RetrainDecision(True, f"{seen} and {new_labels} matured labels")
