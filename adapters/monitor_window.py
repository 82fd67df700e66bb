"""Measure one window of the prediction log: metrics, drift and matured labels over every row,
plus bounded samples for the HTML report. DuckDB does the work; nothing is written."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pandas as pd

from adapters import feature_engine, labels, log_drift, prediction_log
from churn.contracts import Drift, LabelMetrics, Reference, WindowMeasurement
from churn.metrics import classification_metrics
from churn.params import MonitorParams
from churn.settings import Settings

log = logging.getLogger(__name__)


def label_metrics(labelled: pd.DataFrame, note: str) -> LabelMetrics:
    if labelled.empty:
        return LabelMetrics(0, {}, note)
    metrics = classification_metrics(
        labelled["label"].to_numpy(),
        labelled["probability"].to_numpy(),
        labelled["prediction"].to_numpy(),
    )
    return LabelMetrics(len(labelled), metrics, note)


def measure(
    settings: Settings, params: MonitorParams, reference: Reference, start: datetime, end: datetime
) -> WindowMeasurement:
    con = feature_engine.connect(settings)
    con.execute("set TimeZone = 'UTC'")
    try:
        axis = params.time_axis
        read = prediction_log.load_window(
            con, settings.predictions_dir, reference.entity, start, end, axis=axis
        )
        if read.malformed:
            log.warning(
                "skipped %d malformed or incomplete prediction-log lines in %d files",
                read.malformed,
                read.files,
            )
        metrics = prediction_log.window_metrics(con)
        if metrics.count == 0:
            log.warning(
                "no predictions logged in [%s, %s): nothing to judge in this window", start, end
            )
            return WindowMeasurement(
                read, metrics, Drift({}, {}, None), LabelMetrics(0, {}, "no predictions")
            )
        others = {v: n for v, n in metrics.versions.items() if v != reference.model_version}
        if others:
            log.info(
                "predictions by other model versions in this window: %s (judged on the features they share "
                "with champion v%s)",
                others,
                reference.model_version,
            )
        drift = log_drift.measure(con, reference, params.psi_bins)
        lacking = {n: metrics.count - c for n, c in drift.carried.items() if c < metrics.count}
        if lacking:
            log.warning(
                "rows without some of the champion's features (older model versions): %s", lacking
            )
        # outcomes mature a horizon after the prediction: judge quality on the look-back, not just this window
        lookback = end - timedelta(days=params.label_lookback_days)
        prediction_log.load_window(
            con, settings.predictions_dir, reference.entity, lookback, end, "lookback", axis
        )
        (window_labelled, window_note), (labelled, note) = labels.matured(
            settings, con, "preds", "lookback"
        )
        note += f" among predictions of the last {params.label_lookback_days} days"
        sample = prediction_log.sample(con, reference, params.report_sample_rows)
        labelled_sample = (
            labelled.sample(n=min(len(labelled), params.report_sample_rows), random_state=7)
            if len(labelled)
            else None
        )
        return WindowMeasurement(
            read,
            metrics,
            drift,
            labels=label_metrics(labelled, note),
            window_labels=label_metrics(
                window_labelled, window_note + " among this window's predictions"
            ),
            sample=sample,
            labelled_sample=labelled_sample,
        )
    finally:
        con.close()
