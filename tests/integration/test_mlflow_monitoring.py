"""What the MLflow UI shows of monitoring, on a real SQLite store (no Prefect needed): window runs
named to the second, every window's metrics as a line over time (step and timestamp at the window's
end, on a trend run per champion version), the flow as the runs' source, experiments that open on
their runs, and a ``Default`` experiment whose artifacts stay under CHURN_HOME."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from churn import monitoring
from churn.contracts import (
    Drift,
    LabelMetrics,
    Reference,
    WindowMeasurement,
    WindowMetrics,
    WindowRead,
)
from churn.params import AlertRules
from tests.helpers import settings_for

REFERENCE = Reference(
    "3", 0.8, "customer_id", "int64", {"x": "num", "plan": "str"}, pd.DataFrame(), 0.2, 0.4
)


def window(count: int, psi_x: float) -> WindowMeasurement:
    return WindowMeasurement(
        WindowRead(files=1, malformed=0),
        WindowMetrics(count, 0.2, 0.3, 0.1, 2.0, 5.0, {"3": count}, count, 0.5),
        Drift({"x": psi_x, "plan": 0.01}, {"x": count, "plan": count}, 0.02, {"x": 0.5}),
        LabelMetrics(0, {}, "none matured"),
    )


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # wherever a command runs from, nothing lands there
    return settings_for(tmp_path, tmp_path / "raw")


def test_the_default_experiment_keeps_its_artifacts_under_churn_home(settings, tmp_path):
    from adapters.mlflow_store import connect

    client = connect(settings)
    default = client.get_experiment("0")
    assert default.name == "Default"
    assert default.artifact_location == (settings.mlartifacts_dir / "0").resolve().as_uri()
    assert not (tmp_path / "mlruns").exists()


def test_window_metrics_draw_lines_over_time_and_runs_are_named_to_the_second(settings):
    from adapters import mlflow_store

    client = mlflow_store.connect(settings)
    start = datetime(2030, 1, 1, 12)
    ends = [start + timedelta(minutes=60), start + timedelta(minutes=60, seconds=30)]
    rules = AlertRules()
    run_ids = []
    for end, psi in zip(ends, (0.05, 0.6), strict=True):
        measured = window(500, psi)
        conditions = monitoring.conditions(measured, 0.8, rules, REFERENCE.positive_rate)
        run_ids.append(
            mlflow_store.log_monitoring_window(
                settings, REFERENCE, measured, [], start, end, conditions, "flow-run-1"
            )
        )
    runs = [client.get_run(r) for r in run_ids]
    assert [r.info.run_name for r in runs] == [
        "window-20300101T120000-20300101T130000",
        "window-20300101T120000-20300101T130030",
    ]
    steps = [int(e.replace(tzinfo=UTC).timestamp() // 60) for e in ends]
    stamps = [int(e.replace(tzinfo=UTC).timestamp() * 1000) for e in ends]
    for run, step, stamp in zip(runs, steps, stamps, strict=True):
        (point,) = client.get_metric_history(run.info.run_id, "psi.x")
        assert (point.step, point.timestamp) == (step, stamp)
        tags = run.data.tags
        assert tags["mlflow.source.name"] == "flows/monitor.py:monitor"
        assert tags["mlflow.source.type"] == "JOB" and tags["prefect.flow_run_id"] == "flow-run-1"
    # one trend run for champion v3 holds every window as a point of a line
    (trend,) = {r.data.tags["mlflow.parentRunId"] for r in runs}
    history = client.get_metric_history(trend, "drifted_share")
    assert [(m.step, m.timestamp, m.value) for m in history] == [
        (steps[0], stamps[0], 0.0),
        (steps[1], stamps[1], 0.5),
    ]
    assert [m.value for m in client.get_metric_history(trend, "dataset_drift")] == [0.0, 1.0]
    assert client.get_run(trend).info.run_name == "trend-champion-v3"
    experiment = client.get_experiment_by_name("churn-monitoring")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "trend run" in experiment.tags["mlflow.note.content"]
    url = mlflow_store.monitoring_ui_url(settings, 5123)
    assert url == (
        f"http://127.0.0.1:5123/#/experiments/{experiment.experiment_id}/runs"
        "?workflowType=machine_learning&compareRunsMode=CHART"
    )
