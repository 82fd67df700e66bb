"""train: fit a churn classifier on the latest feature set, log it to MLflow, register a challenger,
run the validation gates and promote it to champion only when they approve it."""

from __future__ import annotations

import dataclasses
from typing import Any

from prefect import flow
from prefect.states import State

from churn import events
from churn.params import FeaturesParams, TrainParams
from churn.settings import Settings
from flows.features import features
from flows.outcome import finish
from flows.package import package
from tasks.gates import (
    judge,
    measure_drift,
    measure_latency,
    measure_slices,
    promote_if_approved,
    publish_gate_report,
    score_champion,
)
from tasks.training import (
    check_tracking,
    evaluate_model,
    feature_set_missing,
    fit_model,
    load_training_data,
    log_training_run,
    publish_training_summary,
    register_challenger,
    resolve_params,
    split_training_data,
    validate_training_data,
)


@flow(name="train", timeout_seconds=4 * 3600)
def train(params: TrainParams = TrainParams()) -> State[Any]:
    """Returns the TrainResult (the run's state is named "Rejected" when the gates reject it)."""
    settings = Settings.from_env()
    params = resolve_params(settings, params)
    check_tracking(settings)
    if params.rebuild_features or feature_set_missing(settings):
        features(FeaturesParams())
    data = load_training_data(settings)
    validate_training_data(settings, data)
    split = split_training_data(data, params)
    fitted = fit_model(settings, data, split, params)
    metrics = evaluate_model(data, split, fitted)
    run = log_training_run(settings, params, data, split, fitted, metrics)
    version = register_challenger(settings, params, run, metrics, data)
    report = judge(
        params,
        version,
        metrics,
        score_champion(settings, params, data, split),
        measure_latency(data, split, fitted, params.gates),
        measure_drift(data, params.gates),
        measure_slices(data, split, fitted, params.gates),
    )
    publish_gate_report(settings, params, run, report)
    promotion = promote_if_approved(settings, params, report)
    result = publish_training_summary(
        settings, params, run, version, metrics, fitted, report, promotion
    )
    if params.package and promotion.promoted:
        result = dataclasses.replace(
            result, packaged=package(params.model_name)
        )  # a running service picks it up
    failed = [f"{c.gate}: {c.name}" for c in report.checks if c.status == "FAIL"]
    return finish(
        result,
        *events.train_outcome(params.model_name, version, report.decision, result.promoted, failed),
    )
