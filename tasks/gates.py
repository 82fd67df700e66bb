"""Gate tasks: measure the challenger (and the champion on the same holdout), decide, report, promote."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from adapters import feature_sets, mlflow_store, registry
from churn import events, gates, training
from churn.contracts import (
    ChampionScore,
    FeatureDrift,
    FittedModel,
    Latency,
    Promotion,
    TrainingData,
    TrainingRun,
)
from churn.metrics import classification_metrics, decide
from churn.params import GateParams, TrainParams
from churn.scoring import compile_scorer, plain_rows
from churn.settings import Settings


@task(cache_policy=NO_CACHE)
def score_champion(
    settings: Settings, params: TrainParams, data: TrainingData, split: training.Split
) -> ChampionScore:
    """The current champion's metrics on the challenger's test set, or why it cannot be scored."""
    client = mlflow_store.connect(settings)
    version = registry.alias_version(client, params.model_name, registry.CHAMPION)
    if version is None:
        return ChampionScore(None)
    info = mlflow_store.model_info(
        settings, params.model_name, version
    )  # pinned: the alias may move while we score
    needed = (info.metadata or {}).get("feature_names") or [
        c.name for c in info.signature.inputs.inputs
    ]
    missing = [c for c in needed if c not in data.frame.columns]
    if missing:
        return ChampionScore(
            version,
            note=f"champion v{version} needs features missing from the current holdout: {missing}",
        )
    model, _ = mlflow_store.load_model(settings, params.model_name, version)
    test = data.frame.iloc[split.test]
    proba = model.predict_proba(test[needed])[:, 1]
    metrics = classification_metrics(
        test[data.label].to_numpy(), proba, decide(proba, float(model.threshold))
    )
    logger = get_run_logger()
    logger.info(
        "champion v%s on the current holdout: %s",
        version,
        {k: round(v, 4) for k, v in metrics.items()},
    )
    before = client.get_run(info.run_id).data.params
    learnt = sum(int(before.get(k, 0)) for k in ("train_size", "valid_size", "test_size"))
    logger.info(  # a retrain says what it learns from that the champion did not
        "this training set: %d labelled rows up to as-of %s; champion v%s learnt from %d up to %s (%+d rows)",
        len(data.frame),
        data.frame["as_of"].max(),
        version,
        learnt,
        before.get("last_as_of"),
        len(data.frame) - learnt,
    )
    return ChampionScore(version, metrics)


@task(cache_policy=NO_CACHE)
def measure_latency(
    data: TrainingData, split: training.Split, fitted: FittedModel, gate: GateParams
) -> Latency:
    """p50/p99 of the service's scoring path (churn.scoring, verified against the pipeline) on one
    thread, as the service runs it, for one row and for 1,000 rows: CPU and wall time, best of rounds."""
    from threadpoolctl import threadpool_limits

    x_test, _ = data.xy(split.test)
    sample = x_test.sample(n=1000, random_state=0, replace=len(x_test) < 1000)  # always 1,000 rows
    rows = plain_rows(sample)
    scorer = compile_scorer(fitted.pipeline, data.schema.names, data.schema.dtypes())
    scorer = scorer.verified(rows[:256])
    with threadpool_limits(limits=1):
        latency = gates.time_scoring(scorer.proba, rows, gate.latency.calls, gate.latency.rounds)
    get_run_logger().info(
        "latency (CPU p99 / wall p99): one row %.2f / %.2f ms, %d rows %.2f / %.2f ms",
        latency.single_row.cpu_p99,
        latency.single_row.wall_p99,
        latency.batch_rows,
        latency.batch.cpu_p99,
        latency.batch.wall_p99,
    )
    return latency


@task(cache_policy=NO_CACHE)
def measure_drift(data: TrainingData, gate: GateParams) -> FeatureDrift:
    """PSI per feature: the training set's latest as-of date(s) vs the online snapshot serving will use."""
    path = data.feature_set.path / feature_sets.ONLINE_SNAPSHOT
    online = feature_sets.read_table(path, data.manifest.entity, columns=data.schema.names)
    excluded = {f.name: f.drift_reason for f in data.manifest.features if f.drift_reason}
    return gates.feature_drift(
        data.frame, online, excluded, data.schema.names, gate.drift.bins, gate.drift.reference_dates
    )


@task(cache_policy=NO_CACHE)
def measure_slices(
    data: TrainingData, split: training.Split, fitted: FittedModel, gate: GateParams
) -> dict[str, dict[str, float]]:
    """Test AUC per level of each slice column (default: every categorical feature)."""
    test = data.frame.iloc[split.test]
    columns = gate.slices.columns if gate.slices.columns is not None else data.schema.categorical
    proba = fitted.model.predict_proba(test[data.schema.names])[:, 1]
    return gates.slices(test, columns, data.label, proba, gate.slices.min_rows)


@task(cache_policy=NO_CACHE)
def judge(
    params: TrainParams,
    version: str,
    metrics: dict[str, float],
    champion: ChampionScore,
    latency: Latency,
    drift: FeatureDrift,
    slices: dict[str, dict[str, float]],
) -> gates.GateReport:
    """Every gate's checks and the overall APPROVED / REJECTED."""
    report = gates.evaluate_gates(
        params.gates,
        model_name=params.model_name,
        challenger_version=version,
        challenger_metrics=metrics,
        champion=champion,
        latency=latency,
        drift=drift,
        slices=slices,
    )
    get_run_logger().info("validation report\n%s", report.to_text())
    return report


@task(cache_policy=NO_CACHE)
def publish_gate_report(
    settings: Settings, params: TrainParams, run: TrainingRun, report: gates.GateReport
) -> None:
    """The report as text and JSON on the challenger's MLflow run, a Prefect artifact and version tags."""
    mlflow_store.log_gate_report(settings, run, params.model_name, report)
    create_markdown_artifact(
        key="validation-report",
        markdown=report.to_markdown() + "\n```\n" + report.to_text() + "\n```\n",
        description=f"{report.decision}: {params.model_name} v{report.challenger_version}",
    )


@task(cache_policy=NO_CACHE)
def promote_if_approved(
    settings: Settings, params: TrainParams, report: gates.GateReport
) -> Promotion:
    """Move @champion to the challenger only when APPROVED (and the champion is still the one compared)."""
    from prefect.events import emit_event

    logger = get_run_logger()
    payload = {
        "version": report.challenger_version,
        "champion": report.champion_version,
        "decision": report.decision,
        "failed": [f"{c.gate}: {c.name}" for c in report.checks if c.status == "FAIL"],
    }
    if not report.approved:
        logger.warning(
            "%s v%s REJECTED (%d failed checks): champion unchanged",
            params.model_name,
            report.challenger_version,
            report.counts["FAIL"],
        )
        emit_event(
            events.MODEL_REJECTED,
            resource=events.model_resource(params.model_name),
            payload=payload,
        )
        return Promotion(False, report.champion_version)
    if not params.promote:
        logger.info("approved, but promote=false: champion unchanged")
        return Promotion(False, report.champion_version)
    client = mlflow_store.connect(settings)
    event = registry.promote(
        settings,
        client,
        params.model_name,
        report.challenger_version,
        report.champion_version,
        reason=f"gates APPROVED ({report.counts})",
    )
    logger.info(
        "%s v%s is now @champion (previous: %s)", params.model_name, event.champion, event.previous
    )
    emit_event(
        events.MODEL_PROMOTED,
        resource=events.model_resource(params.model_name),
        payload={**payload, "previous": event.previous},
    )
    return Promotion(True, event.champion, event.previous)
