"""Benchmark: the train flow's wall time beside the bare fit and evaluation of the same estimator,
with the flow split into its stages (from Prefect's task-run timings) so each cost is visible.

    .venv/bin/python -m benchmarks.train [--repeats 3]

Uses the latest feature set under $CHURN_HOME (run `make demo` or `churn features build` first) and
a throw-away MLflow store, so nothing is registered in yours. Imports, the Prefect API start-up and
the MLflow store's creation happen before any timing ("excluding the interpreter's first imports").

The naive baseline is what a notebook does with no orchestration or tracking: read the training
set, the same time split, fit, choose the threshold, the same test metrics, feature importance and
evaluation plots (rendered, not logged). The flow adds Prefect tasks, the MLflow run (params,
metrics, datasets, plots, the skops model with signature) and the registry, then the training
set's Great Expectations suite and the validation gates (champion scored on the same holdout,
latency, PSI, slices, report, promotion). Target: training with its orchestration and tracking <= 1.5x the baseline.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def bare_fit_and_evaluate(features_dir: Path) -> dict[str, float]:
    """The notebook way: the same data, split, fit, metrics and evaluation artifacts, nothing logged."""
    from sklearn.frozen import FrozenEstimator
    from sklearn.model_selection import FixedThresholdClassifier

    from adapters import feature_sets
    from adapters.evaluation import write_evaluation
    from churn import training
    from churn.contracts import FittedModel, TrainingData
    from churn.metrics import classification_metrics, decide
    from churn.params import TrainParams

    started = time.perf_counter()
    feature_set = feature_sets.latest(features_dir)
    frame = feature_sets.read_table(
        feature_set.path / feature_sets.TRAINING_SET, feature_set.manifest.entity
    )
    schema = training.feature_schema(feature_set.manifest.features)
    params = TrainParams()
    split = training.split_rows(
        frame, feature_set.manifest.label, params, feature_set.manifest.horizon_days
    )
    data = TrainingData(frame, feature_set, schema)
    x_train, y_train = data.xy(split.train)
    x_valid, y_valid = data.xy(split.valid)
    pipe = training.build_pipeline(schema, params.estimator, params.class_weight, params.seed)
    fit_started = time.perf_counter()
    pipe.fit(x_train, y_train)
    fit = time.perf_counter() - fit_started
    threshold = training.choose_threshold(y_valid, pipe.predict_proba(x_valid)[:, 1])
    model = FixedThresholdClassifier(
        FrozenEstimator(pipe), threshold=threshold, response_method="predict_proba"
    )
    model.fit(x_valid, y_valid)
    x_test, y_test = data.xy(split.test)
    proba = model.predict_proba(x_test)[:, 1]
    classification_metrics(y_test, proba, decide(proba, threshold))
    # the same importance and plots, written and thrown away
    with tempfile.TemporaryDirectory() as tmp:
        write_evaluation(
            Path(tmp), data, split, FittedModel(model, threshold, {}, 0.0, fit), params.seed
        )
    return {"fit": fit, "total": time.perf_counter() - started}


def _spin(deadline: float) -> None:
    while time.monotonic() < deadline:
        pass


def thread_limits(features_dir: Path) -> list[tuple[str, str, float, float, float]]:
    """Fit time and the latency gate's 1,000-row p99 with every thread and with the project's
    limits (training: the idle cores; the gate: one thread, as served), idle and with busy loops
    holding every core. Returns (load, setting, fit s, gate s, gate p99 ms)."""
    import multiprocessing

    import pandas as pd
    from threadpoolctl import threadpool_limits

    from adapters import feature_sets
    from churn import gates, training
    from churn.contracts import TrainingData
    from churn.params import TrainParams
    from churn.scoring import compile_scorer, plain_rows
    from churn.settings import idle_cores

    feature_set = feature_sets.latest(features_dir)
    frame = feature_sets.read_table(
        feature_set.path / feature_sets.TRAINING_SET, feature_set.manifest.entity
    )
    schema = training.feature_schema(feature_set.manifest.features)
    data = TrainingData(frame, feature_set, schema)
    params = TrainParams()
    split = training.split_rows(frame, data.label, params, feature_set.manifest.horizon_days)
    x_train, y_train = data.xy(split.train)
    x_test, _ = data.xy(split.test)
    sample = x_test.sample(n=1000, random_state=0, replace=len(x_test) < 1000)
    rows = []

    def measure(load: str, setting: str, fit_threads: int | None, gate_threads: int | None) -> None:
        pipe = training.build_pipeline(schema, params.estimator, params.class_weight, params.seed)
        started = time.perf_counter()
        with threadpool_limits(limits=fit_threads):
            pipe.fit(x_train, y_train)
        fit = time.perf_counter() - started
        started = time.perf_counter()
        with threadpool_limits(limits=gate_threads):
            if gate_threads == 1:  # the gate as built: the served scoring path, CPU time
                scorer = compile_scorer(pipe, schema.names, schema.dtypes())
                p99 = gates.time_scoring(scorer.proba, plain_rows(sample), 200, 5).batch.cpu_p99
            else:  # the naive gate: the pipeline on every thread, wall time
                walls = []
                for _ in range(20):
                    t = time.perf_counter()
                    pipe.predict_proba(sample)
                    walls.append((time.perf_counter() - t) * 1000)
                p99 = float(pd.Series(walls).quantile(0.99))
        rows.append((load, setting, fit, time.perf_counter() - started, p99))

    for load in ("idle", "busy"):
        loops = []
        if load == "busy":
            deadline = time.monotonic() + 600
            loops = [
                multiprocessing.Process(target=_spin, args=(deadline,), daemon=True)
                for _ in range(6)
            ]
            for loop in loops:
                loop.start()
        try:
            measure(load, "every thread (naive)", None, None)
            threads = idle_cores()  # the project's default: the cores idle right now
            measure(load, f"limits ({threads} fit, 1 gate)", threads, 1)
            measure(load, "one thread for both", 1, 1)
        finally:
            for loop in loops:
                loop.terminate()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads-only", action="store_true", help="only the thread-limit table")
    args = parser.parse_args()

    from adapters.feature_sets import latest
    from churn.settings import Settings
    from ops.stack import prefect_env, running_port

    settings = Settings.from_env()
    latest(settings.features_dir)  # fail early with a clear message when there is none
    print(
        "thread limits: fit time and the latency gate (1,000 rows), idle and with 6 busy loops on the cores"
    )
    print(f"{'load':<6}{'setting':<28}{'fit s':>8}{'gate s':>8}{'gate p99 ms':>13}")
    for load, setting, fit, gate, p99 in thread_limits(settings.features_dir):
        print(f"{load:<6}{setting:<28}{fit:>8.2f}{gate:>8.2f}{p99:>13.1f}")
    if args.threads_only:
        return 0
    port = None if os.environ.get("PREFECT_API_URL") else running_port(settings)
    for key, value in prefect_env(settings, port).items():
        os.environ.setdefault(key, value)
    settings.bench_dir.mkdir(parents=True, exist_ok=True)
    store = tempfile.mkdtemp(prefix="mlflow-", dir=settings.bench_dir)
    os.environ["CHURN_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"

    # first imports, the Prefect API and the MLflow store's creation: outside every timing
    import great_expectations  # noqa: F401
    import matplotlib.pyplot  # noqa: F401
    import mlflow.sklearn  # noqa: F401
    import skops.io  # noqa: F401
    from prefect import flow

    from adapters.mlflow_store import connect
    from flows.train import train

    connect(Settings.from_env())
    flow(lambda: None, name="warm-up")()

    bare, flows = [], []
    for _ in range(args.repeats):
        bare.append(bare_fit_and_evaluate(settings.features_dir))
        started = time.perf_counter()
        state = train(return_state=True)
        wall = time.perf_counter() - started
        flows.append({"wall": wall, **stage_seconds(state.state_details.flow_run_id, wall)})
    fit = statistics.median(b["fit"] for b in bare)
    total = statistics.median(b["total"] for b in bare)
    median = {k: statistics.median(f[k] for f in flows) for k in flows[0]}
    training = median["training"] + median["orchestration"]
    print(f"\nmedian of {args.repeats} runs on the latest feature set ({settings.features_dir})")
    print(f"bare fit                                         {fit:6.2f} s")
    print(f"bare fit + evaluation (naive baseline)           {total:6.2f} s")
    print(f"train flow, whole                                {median['wall']:6.2f} s")
    print(f"  training + MLflow run + registry               {median['training']:6.2f} s")
    print(f"  Prefect flow overhead (between tasks)          {median['orchestration']:6.2f} s")
    print(f"  Great Expectations on the training set         {median['validation']:6.2f} s")
    print(f"  validation gates + report + promotion          {median['gates']:6.2f} s")
    print(
        f"ratio (training + tracking + Prefect) / baseline {training / total:6.2f}x   (target <= 1.5x)"
    )
    print(f"ratio whole flow / baseline                      {median['wall'] / total:6.2f}x")
    return 0


GATE_TASKS = (
    "score_champion",
    "measure_latency",
    "measure_drift",
    "measure_slices",
    "judge",
    "publish_gate_report",
    "promote_if_approved",
)


def stage_seconds(flow_run_id, wall: float) -> dict[str, float]:
    """Sum Prefect's task-run times per stage; whatever is left of the wall time is flow overhead."""
    import asyncio

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def task_runs():
        async with get_client() as client:
            return await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )

    stages = {"training": 0.0, "validation": 0.0, "gates": 0.0}
    for run in asyncio.run(task_runs()):
        name = run.task_key.rsplit("-", 1)[0] if run.task_key else run.name
        seconds = run.total_run_time.total_seconds()
        stage = (
            "gates"
            if name.startswith(GATE_TASKS)
            else "validation"
            if name.startswith("validate_")
            else "training"
        )
        stages[stage] += seconds
        if os.environ.get("BENCH_VERBOSE"):
            print(f"    {name:<28} {seconds:6.2f} s")
    stages["orchestration"] = max(0.0, wall - sum(stages.values()))
    return stages


if __name__ == "__main__":
    sys.exit(main())
