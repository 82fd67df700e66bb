"""Feature-stage tasks: check and validate sources, build the training set and online snapshot,
validate them, publish. Every task here reads or writes files: none is cached."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from adapters import feature_engine, feature_sets, validation
from churn.contracts import (
    CheckedSources,
    FeatureColumn,
    FeatureSet,
    FeatureSetManifest,
    OnlineSnapshotSummary,
    Partition,
    PartitionSummary,
    SuiteResult,
    TrainingSetSummary,
    ValidationSummary,
)
from churn.expectations import ONLINE_SNAPSHOT, TRAINING_SET, freshness_parameter
from churn.featurestore import FeatureRepo, as_of_schedule, online_as_of
from churn.params import FeaturesParams, with_repo_defaults
from churn.settings import Settings


@task(cache_policy=NO_CACHE)
def resolve_params(settings: Settings, params: FeaturesParams) -> FeaturesParams:
    """The run's params: those given explicitly, then the feature repo's pipeline.yml, then the defaults."""
    defaults = feature_engine.load_pipeline_config(settings.feature_repo).features
    resolved = with_repo_defaults(params, defaults)
    if defaults:
        get_run_logger().info(
            "pipeline.yml features defaults %s; run params %s",
            defaults,
            resolved.model_dump(exclude_defaults=True),
        )
    return resolved


@task(cache_policy=NO_CACHE)
def load_repo(settings: Settings) -> FeatureRepo:
    """Parse and cross-check the feature repo (config, spine SQL, views and their metadata)."""
    repo = feature_engine.load_feature_repo(settings.feature_repo)
    get_run_logger().info(
        "feature repo %s: %d views, %d features",
        repo.root,
        len(repo.views),
        len(repo.feature_columns),
    )
    return repo


@task(cache_policy=NO_CACHE)
def stage_feature_set(settings: Settings) -> tuple[str, Path]:
    """A new version id and its empty staging directory (invisible to readers until published)."""
    return feature_sets.new_staging(settings.features_dir, settings.feature_set_cache)


@task(cache_policy=NO_CACHE)
def discard_feature_set(staging: Path) -> None:
    """Remove a failed run's staging directory; the last published set stays the latest."""
    feature_sets.discard_staging(staging)


@task(cache_policy=NO_CACHE)
def check_sources(settings: Settings, repo: FeatureRepo) -> CheckedSources:
    """Every source exists with its declared columns and types; file digests and data bounds."""
    checked = feature_engine.check_sources(settings, repo)
    get_run_logger().info(
        "sources ok: %s", ", ".join(f"{k}={v.rows}" for k, v in checked.sources.items())
    )
    return checked


@task(cache_policy=NO_CACHE)
def publish_validation_failures(failed: list[validation.ValidationOutcome]) -> None:
    """Each failing suite as a Prefect artifact listing its failing expectations."""
    for outcome in failed:
        create_markdown_artifact(
            key=outcome.artifact_key,
            markdown=outcome.to_markdown(),
            description=f"failing expectations of {outcome.suite}",
        )


@task(cache_policy=NO_CACHE)
def enforce_suites(
    settings: Settings, batches: list[validation.Batch], subject: str = "validation"
) -> list[validation.ValidationOutcome]:
    """Validate every batch against its suite, the results named by ``subject`` and the flow run; on
    any failure publish every failing expectation and stop."""
    from prefect.runtime import flow_run

    logger = get_run_logger()
    try:
        outcomes = validation.enforce(settings, batches, validation.run_name(subject, flow_run.id))
    except validation.DataValidationError as exc:
        for outcome in exc.failed:
            logger.error("%s", outcome.summary())
        publish_validation_failures(exc.failed)
        raise
    for outcome in outcomes:
        logger.info("%s", outcome.summary())
    return outcomes


@task(cache_policy=NO_CACHE)
def validate_sources(
    settings: Settings, repo: FeatureRepo, sources: CheckedSources
) -> ValidationSummary:
    """Every source against its Great Expectations suite (schema, nulls, keys, ranges, freshness)."""
    suites, generated = validation.load_suites(repo, settings.expectations_dir)
    if generated:
        get_run_logger().warning(
            "no suite files for %s in %s: validating with suites generated from the metadata "
            "(`churn expectations generate` writes them)",
            generated,
            settings.expectations_dir,
        )
    newest = pd.Timestamp(sources.bounds.covered_to)
    batches = []
    for name, spec in repo.config.sources.items():
        frame = feature_engine.read_source(sources.sources[name].files)
        parameters = {}
        if spec.max_staleness_days:
            parameters[freshness_parameter(name)] = newest - pd.Timedelta(
                days=spec.max_staleness_days
            )
        batches.append((frame, suites[f"source.{name}"], parameters))
    outcomes = enforce_suites(
        settings, batches, f"sources-{sources.bounds.covered_to:%Y%m%dT%H%M%S}"
    )
    return ValidationSummary(
        suites={o.suite: SuiteResult(success=o.success, evaluated=o.evaluated) for o in outcomes},
        data_docs=outcomes[0].docs,
    )


@task(cache_policy=NO_CACHE)
def training_as_of_dates(
    repo: FeatureRepo, params: FeaturesParams, sources: CheckedSources
) -> list[datetime]:
    """The training as-of dates: the repo's spine with this run's overrides, over the data's extent."""
    return as_of_schedule(
        params.spine(repo.config.spine), sources.bounds.covered_from, sources.bounds.covered_to
    )


@task(cache_policy=NO_CACHE)
def snapshot_as_of(repo: FeatureRepo, params: FeaturesParams, sources: CheckedSources) -> datetime:
    """The online snapshot's as-of: the run's, or midnight after the latest event."""
    return params.online_as_of or online_as_of(repo.config.spine, sources.bounds.covered_to)


@task(cache_policy=NO_CACHE, task_run_name="build_training_partition-{partition.index}")
def build_training_partition(
    settings: Settings,
    repo: FeatureRepo,
    as_of_dates: list[datetime],
    staging: Path,
    partition: Partition,
) -> PartitionSummary:
    """Every view against one hash partition of the labelled spine, on a DuckDB connection of its own."""
    started = time.perf_counter()
    out = feature_sets.part_file(staging / feature_sets.TRAINING_SET, partition)
    rows, positives = feature_engine.write_features(
        settings, repo, as_of_dates, with_label=True, out=out, partition=partition
    )
    seconds = time.perf_counter() - started
    get_run_logger().info(
        "training set partition %d/%d: %d rows, %d positive in %.2fs",
        partition.index + 1,
        partition.count,
        rows,
        positives,
        seconds,
    )
    return PartitionSummary(index=partition.index, rows=rows, positives=positives, seconds=seconds)


@task(cache_policy=NO_CACHE, task_run_name="build_snapshot_partition-{partition.index}")
def build_snapshot_partition(
    settings: Settings, repo: FeatureRepo, as_of: datetime, staging: Path, partition: Partition
) -> PartitionSummary:
    """The same views for one hash partition of the entities eligible at the snapshot's as-of."""
    started = time.perf_counter()
    out = feature_sets.part_file(staging / feature_sets.ONLINE_SNAPSHOT, partition)
    rows, _ = feature_engine.write_features(
        settings, repo, [as_of], with_label=False, out=out, partition=partition
    )
    seconds = time.perf_counter() - started
    get_run_logger().info(
        "online snapshot partition %d/%d: %d entities in %.2fs",
        partition.index + 1,
        partition.count,
        rows,
        seconds,
    )
    return PartitionSummary(index=partition.index, rows=rows, positives=0, seconds=seconds)


@task(cache_policy=NO_CACHE)
def summarise_training_set(
    repo: FeatureRepo,
    params: FeaturesParams,
    as_of_dates: list[datetime],
    parts: list[PartitionSummary],
) -> TrainingSetSummary:
    """The training set's counts over its partitions: rows, positives, as-of range and cadence."""
    spine = params.spine(repo.config.spine)
    summary = TrainingSetSummary(
        rows=sum(p.rows for p in parts),
        positives=sum(p.positives for p in parts),
        as_of_count=len(as_of_dates),
        first_as_of=as_of_dates[0],
        last_as_of=as_of_dates[-1],
        cadence=f"{spine.every_months} month(s)"
        if spine.every_months
        else f"{spine.every_days} days",
        partitions=len(parts),
    )
    get_run_logger().info(
        "training set: %d rows over %d as-of dates, %d positive; %d partition(s), slowest %.2fs",
        summary.rows,
        summary.as_of_count,
        summary.positives,
        len(parts),
        max(p.seconds for p in parts),
    )
    return summary


@task(cache_policy=NO_CACHE)
def summarise_online_snapshot(
    as_of: datetime, parts: list[PartitionSummary]
) -> OnlineSnapshotSummary:
    """The online snapshot's entity count over its partitions."""
    summary = OnlineSnapshotSummary(
        rows=sum(p.rows for p in parts), as_of=as_of, partitions=len(parts)
    )
    get_run_logger().info(
        "online snapshot: %d entities as of %s; %d partition(s), slowest %.2fs",
        summary.rows,
        as_of,
        len(parts),
        max(p.seconds for p in parts),
    )
    return summary


@task(cache_policy=NO_CACHE)
def validate_feature_set(settings: Settings, repo: FeatureRepo, staging: Path) -> ValidationSummary:
    """The built training set and online snapshot against their suites, before they are published."""
    suites, _ = validation.load_suites(repo, settings.expectations_dir)
    files = {
        TRAINING_SET: staging / feature_sets.TRAINING_SET,
        ONLINE_SNAPSHOT: staging / feature_sets.ONLINE_SNAPSHOT,
    }
    entity = repo.config.entity
    outcomes = enforce_suites(
        settings,
        [(feature_sets.read_table(path, entity), suites[name], {}) for name, path in files.items()],
        f"feature-set-{feature_sets.staged_version(staging)}",
    )
    # the stamp lets the train flow skip re-validating exactly these bytes with exactly this suite
    return ValidationSummary(
        suites={
            o.suite: SuiteResult(
                success=o.success,
                evaluated=o.evaluated,
                stamp=validation.validation_stamp(suites[o.suite], files[o.suite]),
            )
            for o in outcomes
        },
        data_docs=outcomes[0].docs,
    )


@task(cache_policy=NO_CACHE)
def publish_feature_set(
    settings: Settings,
    repo: FeatureRepo,
    version: str,
    staging: Path,
    sources: CheckedSources,
    training: TrainingSetSummary,
    online: OnlineSnapshotSummary,
    validated: list[ValidationSummary],
) -> FeatureSet:
    """Write the manifest and make this version the latest; only reached when every step succeeded."""
    manifest = FeatureSetManifest(
        version=version,
        created_at=datetime.now(UTC),
        feature_repo=repo.root,
        entity=repo.config.entity,
        entity_dtype=repo.config.entity_dtype,
        label=repo.config.label,
        features=[
            FeatureColumn(
                name=c.name,
                dtype=c.dtype,
                min=c.min,
                max=c.max,
                drift_reason=None if c.drift else c.drift_reason,
            )
            for c in repo.feature_columns
        ],
        sql_hashes=repo.sql_hashes(),
        horizon_days=repo.config.spine.horizon_days,
        training_set=training,
        online_snapshot=online,
        sources=sources.sources,
        data_bounds=sources.bounds,
        validation=ValidationSummary(
            suites={k: v for part in validated for k, v in part.suites.items()},
            data_docs=next((v.data_docs for v in validated if v.data_docs), None),
        ),
    )
    feature_set = feature_sets.publish(settings.features_dir, staging, manifest)
    create_markdown_artifact(
        key="feature-set",
        markdown=(
            f"# Feature set `{version}`\n\n"
            f"| | |\n|---|---|\n"
            f"| training rows | {training.rows} ({training.positives} positive) |\n"
            f"| as-of dates | {training.as_of_count}: {training.first_as_of} .. {training.last_as_of} |\n"
            f"| online snapshot | {online.rows} entities as of {online.as_of} |\n"
            f"| partitions | {training.partitions} (task runner: {settings.task_runner}) |\n"
            f"| features | {len(manifest.features)} from {len(repo.views)} views |\n"
            f"| path | `{feature_set.path}` |\n"
        ),
        description="latest published feature set",
    )
    get_run_logger().info("published feature set %s at %s", version, feature_set.path)
    return feature_set
