"""monitor: judge a window of the prediction log against the champion's reference (drift, metrics,
matured labels), report with Evidently, store the results, raise or clear alerts and decide
whether to retrain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect import flow

from churn.params import MonitorParams
from churn.settings import Settings
from tasks.monitoring import (
    judge,
    load_reference,
    measure_window,
    notify,
    publish_monitoring,
    record,
    render_report,
    trigger_retraining,
)


def _utc(moment: datetime) -> datetime:
    """Naive UTC (the prediction log's clock); a naive input is taken as UTC already."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


@flow(name="monitor")
def monitor(params: MonitorParams = MonitorParams()) -> dict:
    settings = Settings.from_env()
    end = _utc(params.end) if params.end else datetime.now(UTC).replace(tzinfo=None)
    start = _utc(params.start) if params.start else end - timedelta(minutes=params.window_minutes)
    reference = load_reference(settings, params.model_name)
    measured = measure_window(settings, params, reference, start, end)
    report = render_report(settings, params, reference, measured, end)
    verdict = judge(settings, params, reference, measured, end)
    via = notify(settings, params, verdict["events"], start, end)
    record(settings, reference, measured, verdict, report, via, start, end)  # stored before any retraining starts
    publish_monitoring(settings, reference, measured, verdict, report, start, end)
    retrain_run = trigger_retraining(settings, params, end) if verdict["decision"]["fire"] else None
    return {"window": [str(start), str(end)], "count": measured["metrics"]["count"], "psi": measured["psi"],
            "labels": measured["labels"], "events": verdict["events"], "decision": verdict["decision"],
            "retrain_run": retrain_run, "report": str(report) if report else None,
            "malformed": measured["read"]["malformed"]}
