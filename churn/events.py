"""The pipeline's Prefect events: what happened to which model, by name, for automations and the UI.

Emitted by the tasks where the outcome is decided; prefect.yaml's deployment trigger turns
``RETRAIN_REQUESTED`` into a run of the training deployment, and any automation a user adds in the
Prefect UI can react to the others (e.g. a notification on ``ALERT_FIRED``).
"""

from __future__ import annotations

MODEL_PROMOTED = "churn.model.promoted"
MODEL_REJECTED = "churn.model.rejected"
MODEL_ROLLED_BACK = "churn.model.rolled-back"
ALERT_FIRED = "churn.alert.fired"
ALERT_CLEARED = "churn.alert.cleared"
RETRAIN_REQUESTED = "churn.retrain.requested"


def model_resource(model_name: str) -> dict[str, str]:
    """The event resource of a registered model: one id per model, so triggers can match one."""
    return {"prefect.resource.id": f"churn.model.{model_name}", "prefect.resource.name": model_name}


def open_after(open_before: set[str], changes: list[tuple[str, str]]) -> list[str]:
    """The alerts open once a window's (rule, fired|cleared) changes are applied, sorted."""
    still = set(open_before)
    for rule, event in changes:
        (still.add if event == "fired" else still.discard)(rule)
    return sorted(still)


def train_outcome(
    model_name: str, version: str, decision: str, promoted: bool, failed_checks: list[str]
) -> tuple[str, str, list[str]]:
    """The name, message and tags a train run ends with, so the UI shows a rejection as one."""
    model = f"{model_name} v{version}"
    if promoted:
        return "Completed", f"{model} APPROVED and promoted to @champion", ["approved", "promoted"]
    if decision == "APPROVED":
        return "Completed", f"{model} APPROVED, not promoted (promote=false)", ["approved"]
    shown = ", ".join(failed_checks[:5]) + (" ..." if len(failed_checks) > 5 else "")
    return "Rejected", f"{model} REJECTED: {shown or 'see the validation report'}", ["rejected"]


def monitor_outcome(
    open_alerts: list[str], fired: list[str], retrain_fired: bool, retrain_failed: bool
) -> tuple[str, str, list[str]]:
    """Quiet windows end Completed; open alerts end "Alerting", a retrain request "Retraining"."""
    tags = (["alerting"] if open_alerts else []) + (["retraining"] if retrain_fired else [])
    alerts = (
        f"{len(open_alerts)} alert(s) open ({', '.join(open_alerts[:5])})" if open_alerts else ""
    )
    new = f", {len(fired)} fired in this window" if fired else ""
    if retrain_fired:
        started = "could not start" if retrain_failed else "requested"
        return "Retraining", f"retraining {started}; {alerts or 'no alert open'}{new}", tags
    if open_alerts:
        return "Alerting", alerts + new, tags
    return "Completed", "quiet: no alert open", tags
