"""monitor: judge a window of the prediction log against the champion's reference (drift, metrics,
matured labels), report with Evidently, store the results, raise or clear alerts and decide
whether to retrain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow
from prefect.states import State

from churn import events
from churn.monitoring import MonitorResult, default_window_end, retrain_params
from churn.params import MonitorParams
from churn.settings import ServiceSettings, Settings, is_url
from flows.outcome import finish
from flows.train import train
from tasks.monitoring import (
    judge,
    load_reference,
    measure_window,
    note_retraining,
    notify,
    publish_monitoring,
    record,
    render_report,
    resolve_params,
    start_retraining,
)


def _utc(moment: datetime) -> datetime:
    """Naive UTC (the prediction log's clock); a naive input is taken as UTC already."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


@flow(name="monitor", timeout_seconds=3600)
def monitor(params: MonitorParams = MonitorParams()) -> State[Any]:
    """Returns the MonitorResult; the run's state is named "Alerting" while alerts are open and
    "Retraining" when this window requested retraining."""
    settings = Settings.from_env()
    params = resolve_params(settings, params)
    end = (
        _utc(params.window_end)
        if params.window_end
        else default_window_end(
            datetime.now(UTC).replace(tzinfo=None),
            ServiceSettings.from_env().log_flush_seconds
            if is_url(settings.predictions_dir)
            else None,
        )
    )
    start = (
        _utc(params.window_start)
        if params.window_start
        else end - timedelta(minutes=params.window_minutes)
    )
    reference = load_reference(settings, params.model_name)
    window = measure_window(settings, params, reference, start, end)
    verdict = judge(settings, params, reference, window, end)
    via = notify(settings, params, verdict.events, start, end)
    report = render_report(
        settings, params, reference, window, start, end
    )  # optional: never loses the window
    record(
        settings, reference, window, verdict, report, via, start, end, params.time_axis
    )  # before retraining
    publish_monitoring(settings, reference, window, verdict, report, start, end)
    retrain_run, failed = None, False
    if verdict.decision.fire:
        try:
            if params.retrain.in_process:  # a subflow: no worker needed
                trained = train(retrain_params(params.retrain, params.model_name))
                retrain_run = (
                    f"in-process train: v{trained.version} "
                    f"{'promoted' if trained.promoted else 'not promoted'} ({trained.decision})"
                )
            else:
                retrain_run = start_retraining(params, end)
        except (
            Exception
        ) as exc:  # the window is stored; the failure is recorded and the next window retries
            failed, retrain_run = True, f"failed: {type(exc).__name__}: {exc}"
        note_retraining(settings, end, retrain_run, failed)
    open_alerts = events.open_after(verdict.open_rules, [(e.rule, e.event) for e in verdict.events])
    result = MonitorResult(
        window_start=start,
        window_end=end,
        count=window.metrics.count,
        malformed=window.read.malformed,
        psi=window.drift.psi,
        labels=window.labels,
        window_labels=window.window_labels,
        events=verdict.events,
        retrain=verdict.decision,
        retrain_run=retrain_run,
        report=str(report) if report else None,
        open_alerts=open_alerts,
    )
    fired = [e.rule for e in verdict.events if e.event == "fired"]
    return finish(
        result, *events.monitor_outcome(open_alerts, fired, verdict.decision.fire, failed)
    )
