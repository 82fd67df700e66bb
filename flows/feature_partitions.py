"""feature_partitions: evaluate every view over N hash partitions of the entity, each partition of
the training set and of the online snapshot its own task with its own DuckDB connection, on the
task runner the settings choose (a thread pool, or Dask); a subflow of ``features``."""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import flow
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from churn.contracts import CheckedSources, OnlineSnapshotSummary, Partition, TrainingSetSummary
from churn.featurestore import FeatureRepo
from churn.params import FeaturesParams
from churn.settings import Settings
from tasks.features import (
    build_snapshot_partition,
    build_training_partition,
    snapshot_as_of,
    summarise_online_snapshot,
    summarise_training_set,
    training_as_of_dates,
)


def partition_runner(settings: Settings) -> TaskRunner:
    """``CHURN_TASK_RUNNER``: Prefect's thread pool (``task_workers`` threads), or its DaskTaskRunner
    on the scheduler at ``CHURN_DASK_ADDRESS`` or else on a local cluster of ``task_workers``
    single-threaded processes (DuckDB brings its own threads)."""
    if settings.task_runner == "thread":
        return ThreadPoolTaskRunner(max_workers=settings.task_workers)
    from prefect_dask import DaskTaskRunner

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    logging.getLogger("distributed").setLevel(logging.WARNING)  # not every worker's start and stop
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": settings.task_workers,
            "threads_per_worker": 1,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": "127.0.0.1:0",  # its status server on a free loopback port
            "silence_logs": logging.ERROR,
        }
    )


# the parameters are the parent flow's records, validated once already: no pydantic copy of the repo
@flow(name="feature_partitions", validate_parameters=False)
def feature_partitions(
    settings: Settings,
    repo: FeatureRepo,
    params: FeaturesParams,
    sources: CheckedSources,
    staging: Path,
) -> tuple[TrainingSetSummary, OnlineSnapshotSummary]:
    dates = training_as_of_dates(repo, params, sources)
    as_of = snapshot_as_of(repo, params, sources)
    parts = [Partition(i, params.partitions) for i in range(params.partitions)]
    training = [build_training_partition.submit(settings, repo, dates, staging, p) for p in parts]
    online = [build_snapshot_partition.submit(settings, repo, as_of, staging, p) for p in parts]
    return (
        summarise_training_set(repo, params, dates, [f.result() for f in training]),
        summarise_online_snapshot(as_of, [f.result() for f in online]),
    )
