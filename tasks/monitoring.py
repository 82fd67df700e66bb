"""Monitor tasks, one per step: the champion's reference, the window's measurements, the Evidently
report, the verdict (alerts and the retrain decision), notification, the store, MLflow, retraining."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.tasks import exponential_backoff

from adapters import (
    evidently_reports,
    feature_engine,
    mlflow_store,
    monitor_window,
    monitoring_store,
)
from churn import events as pipeline_events
from churn import monitoring
from churn.contracts import Reference, WindowMeasurement
from churn.monitoring import AlertEvent, Verdict
from churn.params import MonitorParams, with_repo_defaults
from churn.settings import Settings


@task(cache_policy=NO_CACHE)
def resolve_params(settings: Settings, params: MonitorParams) -> MonitorParams:
    """The run's params: those given explicitly, then the feature repo's pipeline.yml, then
    CHURN_MODEL_NAME, then the defaults."""
    defaults = {"model_name": settings.model_name} | feature_engine.load_pipeline_config(
        settings.feature_repo
    ).monitor
    return with_repo_defaults(params, defaults)


@task(cache_policy=NO_CACHE)
def load_reference(settings: Settings, model_name: str) -> Reference:
    """The champion's reference sample (logged with its training run), cached per version."""
    return mlflow_store.load_reference(settings, model_name)


@task(cache_policy=NO_CACHE)
def measure_window(
    settings: Settings, params: MonitorParams, reference: Reference, start: datetime, end: datetime
) -> WindowMeasurement:
    """Metrics, PSI per feature and of the prediction, and matured-label quality, over every row of the window."""
    window = monitor_window.measure(settings, params, reference, start, end)
    get_run_logger().info(
        "window [%s, %s): %d predictions; %s", start, end, window.metrics.count, window.labels.note
    )
    return window


@task(cache_policy=NO_CACHE)
def render_report(
    settings: Settings,
    params: MonitorParams,
    reference: Reference,
    window: WindowMeasurement,
    start: datetime,
    end: datetime,
) -> Path | str | None:
    """Evidently data drift with the monitor's own figures and verdict (and classification quality at
    the model's decision threshold), plotted on bounded samples, as HTML named by window, version,
    verdict and flow run. When Evidently fails, the failure is logged and returned (it is stored
    with the window), and the window is judged and stored as ever."""
    from prefect.runtime import flow_run

    try:
        return evidently_reports.render(
            settings.reports_dir, reference, window, params, start, end, flow_run.id
        )
    except Exception as exc:  # any failure of the optional renderer: never lose the window for it
        get_run_logger().error(
            "the Evidently report failed (%s: %s); the window is stored without it",
            type(exc).__name__,
            exc,
        )
        return f"failed: {type(exc).__name__}: {str(exc)[:300]}"


# a reader holding monitoring.duckdb open (e.g. an inspection shell) locks the writer out for a while
STORE_RETRIES = dict(
    retries=4,
    retry_delay_seconds=exponential_backoff(backoff_factor=3),
    retry_condition_fn=monitoring_store.retry_when_locked,
)


@task(cache_policy=NO_CACHE, **STORE_RETRIES)
def judge(
    settings: Settings,
    params: MonitorParams,
    reference: Reference,
    window: WindowMeasurement,
    end: datetime,
) -> Verdict:
    """Alert conditions for this window, the changes against open alerts, and the retraining decision."""
    current = monitoring.conditions(
        window, reference.training_auc_roc, params.alerts, reference.positive_rate
    )
    con = monitoring_store.open_store(settings)
    try:
        opened = monitoring_store.open_alerts(con)
        recent = monitoring_store.recent_breaches(con, end, params.retrain.windows - 1)
        last = monitoring_store.last_retrain(con)
    finally:
        con.close()
    breach = monitoring.is_breach(current)
    # matured labels in the look-back are what a retrained model can learn from
    decision = monitoring.retrain_decision(
        [*recent, breach],
        window.labels.labelled,
        last,
        datetime.now(UTC).replace(tzinfo=None),
        params.retrain,
    )
    events = monitoring.alert_events(current, opened, params.alerts.clear_ratio)
    return Verdict(current, events, breach, decision, opened)


@task(cache_policy=NO_CACHE)
def notify(
    settings: Settings,
    params: MonitorParams,
    events: list[AlertEvent],
    start: datetime,
    end: datetime,
) -> str:
    """Each alert change to the Prefect notification block (when named) and always to alerts.jsonl."""
    if not events:
        return "none"
    logger = get_run_logger()
    lines = [
        f"[{e.event.upper()}] {e.rule}: {e.value:.4f} (limit {e.limit:g}) in window "
        f"{start:%Y-%m-%d %H:%M}..{end:%H:%M} UTC"
        for e in events
    ]
    for line in lines:
        logger.warning(line)
    from prefect.events import emit_event

    for e in events:
        emit_event(
            pipeline_events.ALERT_FIRED if e.event == "fired" else pipeline_events.ALERT_CLEARED,
            resource=pipeline_events.model_resource(params.model_name),
            related=[
                {"prefect.resource.id": f"churn.alert.{e.rule}", "prefect.resource.role": "rule"}
            ],
            payload={
                "rule": e.rule,
                "value": e.value,
                "limit": e.limit,
                "window_start": start.isoformat(),
                "window_end": end.isoformat(),
            },
        )
    via = "file"
    if params.notify_block:
        try:
            deliver(
                params.notify_block,
                "\n".join(lines),
                f"churn monitor: {len(events)} alert change(s)",
            )
            via = f"block {params.notify_block}"
        except Exception as exc:  # the file below still records every alert
            logger.error(
                "notification block %s failed after retries (%s); alerts are in alerts.jsonl",
                params.notify_block,
                exc,
            )
            via = f"file (block {params.notify_block} failed: {exc})"
    monitoring_store.append_alerts(settings, events, start, end, via)
    return via


@task(cache_policy=NO_CACHE, retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=2))
def deliver(block: str, text: str, subject: str) -> None:
    """One message to a Prefect notification block; retried, since webhooks fail transiently."""
    from prefect.blocks.core import Block

    Block.load(block).notify(text, subject=subject)


@task(cache_policy=NO_CACHE, **STORE_RETRIES)
def record(
    settings: Settings,
    reference: Reference,
    window: WindowMeasurement,
    verdict: Verdict,
    report: Path | str | None,
    delivered_via: str,
    start: datetime,
    end: datetime,
    time_axis: str,
) -> None:
    """One transaction: the window row, its per-feature drift rows, alert changes and the decision."""
    monitoring_store.record_window(
        settings, reference, window, verdict, report, delivered_via, start, end, time_axis
    )


@task(cache_policy=NO_CACHE)
def publish_monitoring(
    settings: Settings,
    reference: Reference,
    window: WindowMeasurement,
    verdict: Verdict,
    report: Path | str | None,
    start: datetime,
    end: datetime,
) -> None:
    """A Prefect markdown summary (and a link to the HTML report), and an MLflow run for trends."""
    m, labels, drift = window.metrics, window.labels, window.drift
    fired = {e.rule for e in verdict.events if e.event == "fired"}
    drifted = sorted(
        (v, k) for k, v in drift.psi.items() if f"psi:{k}" in verdict.open_rules | fired
    )
    prediction_psi = None if drift.prediction_psi is None else round(drift.prediction_psi, 4)
    auc_roc = labels.get("auc_roc")
    lines = [
        f"# Monitoring {start:%Y-%m-%d %H:%M}..{end:%H:%M} UTC (champion v{reference.model_version})",
        "",
        f"- predictions: {m.count} (malformed lines skipped: {window.read.malformed})",
        f"- positive rate {m.positive_rate:.3f}, p99 latency {m.latency_p99_ms:.1f} ms",
        f"- prediction PSI: {prediction_psi}",
        f"- labels: {labels.note}" + (f"; auc_roc {auc_roc:.4f}" if auc_roc is not None else ""),
        f"- drifted features: {', '.join(f'{k} (PSI {v:.3f})' for v, k in reversed(drifted)) or 'none'}",
        f"- alert changes: {', '.join(e.event + ' ' + e.rule for e in verdict.events) or 'none'}",
        f"- retraining: {'FIRED' if verdict.decision.fire else 'not fired'}: {verdict.decision.reason}",
    ]
    create_markdown_artifact(
        "\n".join(lines), key="monitoring-summary", description="monitor window summary"
    )
    from prefect.runtime import flow_run

    run_id = mlflow_store.log_monitoring_window(
        settings,
        reference,
        window,
        evidently_reports.report_files(report) if isinstance(report, Path) else [],
        start,
        end,
        verdict.conditions,
        flow_run.id,
    )
    if isinstance(report, Path):
        # the copy logged to MLflow: a browser opens it from the Prefect UI, a file:// link it cannot
        create_link_artifact(
            mlflow_store.artifacts_url(settings, run_id),
            link_text=f"Evidently report {report.name} (MLflow run artifacts)",
            key="monitoring-report",
            description=f"open with `make mlflow-ui`; on disk: {report}",
        )
    get_run_logger().info("\n".join(lines))


@task(cache_policy=NO_CACHE)
def start_retraining(params: MonitorParams, end: datetime) -> str:
    """A ``churn.retrain.requested`` event with the retrain overrides: the deployment trigger of the
    training deployment (prefect.yaml, an automation in the UI) runs it; returns what was requested."""
    from prefect.client.orchestration import get_client
    from prefect.events import emit_event
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name(params.retrain.deployment)
    except ObjectNotFound:
        raise LookupError(
            f"deployment {params.retrain.deployment!r} is not registered with the Prefect server: run `make deploy`, "
            "or set retrain.in_process to train in the monitor's own process"
        ) from None
    overrides = monitoring.retrain_params(params.retrain, params.model_name).model_dump(
        mode="json", exclude_unset=True
    )
    event = emit_event(
        pipeline_events.RETRAIN_REQUESTED,
        resource=pipeline_events.model_resource(params.model_name),
        payload={"params": overrides, "window_end": end.isoformat()},
    )
    if event is None:
        raise RuntimeError("the retrain event could not be emitted (no Prefect events client)")
    return f"event {event.id}: the {params.retrain.deployment} trigger starts the run"


@task(cache_policy=NO_CACHE, **STORE_RETRIES)
def note_retraining(settings: Settings, end: datetime, outcome: str, failed: bool) -> None:
    """What retraining started (or why it could not), on this window's (already stored) decision."""
    monitoring_store.note_retrain_run(settings, end, outcome, failed)
    if failed:
        get_run_logger().error(
            "retraining could not start: %s (no cooldown: the next window retries)", outcome
        )
    else:
        get_run_logger().info("retraining: %s", outcome)
