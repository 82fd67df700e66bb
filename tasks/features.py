"""Feature-stage tasks: check sources, build the training set and online snapshot, publish them."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from churn.expectations import ONLINE_SNAPSHOT as ONLINE_SNAPSHOT_SUITE
from churn.expectations import TRAINING_SET as TRAINING_SET_SUITE
from churn.expectations import freshness_parameter
from churn.featurestore import FeatureRepo, as_of_schedule, online_as_of
from churn.params import FeaturesParams
from churn.settings import Settings
from tasks import data_validation, feature_sets
from tasks import feature_engine as engine

# Every task here reads or writes files: never cache them.


@task(cache_policy=NO_CACHE)
def load_repo(settings: Settings) -> FeatureRepo:
    """Parse and cross-check the feature repo (config, spine SQL, views and their metadata)."""
    repo = engine.load_feature_repo(settings.feature_repo)
    get_run_logger().info("feature repo %s: %d views, %d features", repo.root, len(repo.views), len(repo.feature_columns))
    return repo


@task(cache_policy=NO_CACHE)
def stage_feature_set(settings: Settings) -> tuple[str, Path]:
    """A new version id and its empty staging directory (invisible to readers until published)."""
    return feature_sets.new_staging(settings.features_dir)


@task(cache_policy=NO_CACHE)
def discard_feature_set(staging: Path) -> None:
    """Remove a failed run's staging directory; the last published set stays the latest."""
    feature_sets.discard_staging(staging)


@task(cache_policy=NO_CACHE)
def check_sources(settings: Settings, repo: FeatureRepo) -> dict:
    """Every source exists with its declared columns and types; returns file digests and data bounds."""
    sources = engine.resolve_sources(repo, settings.raw_dir)
    with engine.connect(settings) as con:
        engine.register_sources(con, repo, sources)
        bounds = engine.data_bounds(con, repo)
        rows = {s.name: con.execute(f'select count(*) from "{s.name}"').fetchall()[0][0] for s in sources}
    files = {
        s.name: {"rows": rows[s.name], "files": {f: engine.file_digest(f) for f in s.files}} for s in sources
    }
    get_run_logger().info("sources ok: %s", ", ".join(f"{k}={v}" for k, v in rows.items()))
    return {"sources": files, "bounds": asdict(bounds)}


def _build(settings: Settings, repo: FeatureRepo, as_of_dates: list[datetime], with_label: bool, out: Path) -> tuple[int, int]:
    """Write the feature rows for the spine at ``as_of_dates``; return (rows, positive labels).

    Views are checked to give at most one row per spine row and are left-joined onto it, so the
    output has exactly the spine's rows: both counts come from the spine, not from re-reading ``out``.
    """
    with engine.connect(settings) as con:
        engine.register_sources(con, repo, engine.resolve_sources(repo, settings.raw_dir))
        rows = engine.build_spine(con, repo, as_of_dates, with_label=with_label)
        engine.evaluate_views(con, repo).order(f'as_of, "{repo.config.entity}"').write_parquet(str(out))
        positives = con.execute(f'select sum("{repo.config.label}") from spine').fetchall()[0][0] if with_label else 0
        return rows, int(positives or 0)


@task(cache_policy=NO_CACHE)
def validate_sources(settings: Settings, repo: FeatureRepo, sources: dict) -> dict:
    """Every source against its Great Expectations suite (schema, nulls, keys, ranges, freshness)."""
    import pandas as pd

    suites, generated = data_validation.load_suites(repo, settings.expectations_dir)
    if generated:
        get_run_logger().warning("no suite files for %s in %s: validating with suites generated from the metadata "
                                 "(`churn expectations generate` writes them)", generated, settings.expectations_dir)
    newest = pd.Timestamp(sources["bounds"]["covered_to"])
    batches = []
    for name, spec in repo.config.sources.items():
        frame = pd.read_parquet(list(sources["sources"][name]["files"]))
        parameters = {}
        if spec.max_staleness_days:
            parameters[freshness_parameter(name)] = newest - pd.Timedelta(days=spec.max_staleness_days)
        batches.append((frame, suites[f"source.{name}"], parameters))
    outcomes = data_validation.enforce(settings, batches)
    return {o.suite: {"success": o.success, "evaluated": o.evaluated} for o in outcomes} | {"data_docs": outcomes[0].docs}


@task(cache_policy=NO_CACHE)
def validate_feature_set(settings: Settings, repo: FeatureRepo, staging: Path) -> dict:
    """The built training set and online snapshot against their suites, before they are published."""
    import pandas as pd

    suites, _ = data_validation.load_suites(repo, settings.expectations_dir)
    files = {TRAINING_SET_SUITE: staging / feature_sets.TRAINING_SET, ONLINE_SNAPSHOT_SUITE: staging / feature_sets.ONLINE_SNAPSHOT}
    outcomes = data_validation.enforce(settings, [(pd.read_parquet(path), suites[name], {}) for name, path in files.items()])
    # the stamp lets the train flow skip re-validating exactly these bytes with exactly this suite
    return {o.suite: {"success": o.success, "evaluated": o.evaluated,
                      "stamp": data_validation.validation_stamp(suites[o.suite], files[o.suite])} for o in outcomes}


@task(cache_policy=NO_CACHE)
def build_training_set(
    settings: Settings, repo: FeatureRepo, params: FeaturesParams, bounds: dict, staging: Path
) -> dict:
    """Evaluate every view against the labelled spine (population.sql + label.sql) at each as-of."""
    spine = repo.config.spine.model_copy(
        update={k: v for k, v in {"start": params.start, "end": params.end, "every_days": params.every_days}.items() if v}
    )
    dates = as_of_schedule(spine, bounds["covered_from"], bounds["covered_to"])
    out = staging / feature_sets.TRAINING_SET
    rows, positives = _build(settings, repo, dates, with_label=True, out=out)
    get_run_logger().info("training set: %d rows over %d as-of dates, %d positive", rows, len(dates), positives)
    return {
        "rows": rows,
        "positives": positives,
        "as_of_count": len(dates),
        "as_of_first": dates[0],
        "as_of_last": dates[-1],
        "every_days": spine.every_days,
    }


@task(cache_policy=NO_CACHE)
def build_online_snapshot(
    settings: Settings, repo: FeatureRepo, params: FeaturesParams, bounds: dict, staging: Path
) -> dict:
    """Evaluate the same views for every entity eligible at one as-of: the serving snapshot."""
    as_of = params.online_as_of or online_as_of(repo.config.spine, bounds["covered_to"])
    rows, _ = _build(settings, repo, [as_of], with_label=False, out=staging / feature_sets.ONLINE_SNAPSHOT)
    get_run_logger().info("online snapshot: %d entities as of %s", rows, as_of)
    return {"rows": rows, "as_of": as_of}


@task(cache_policy=NO_CACHE)
def publish_feature_set(
    settings: Settings, repo: FeatureRepo, version: str, staging: Path, sources: dict, training: dict, online: dict,
    validation: dict,
) -> dict:
    """Write the manifest and make this version the latest; only reached when every step succeeded."""
    manifest = {
        "version": version,
        "created_at": datetime.now(UTC),
        "feature_repo": repo.root,
        "entity": repo.config.entity,
        "label": repo.config.label,
        "features": [{"name": c.name, "dtype": c.dtype} for c in repo.feature_columns],
        "sql_hashes": repo.sql_hashes(),
        "horizon_days": repo.config.spine.horizon_days,
        "training_set": training,
        "online_snapshot": online,
        "sources": sources["sources"],
        "data_bounds": sources["bounds"],
        "validation": validation,
    }
    path = feature_sets.publish(settings.features_dir, version, staging, manifest)
    create_markdown_artifact(
        key="feature-set",
        markdown=(
            f"# Feature set `{version}`\n\n"
            f"| | |\n|---|---|\n"
            f"| training rows | {training['rows']} ({training['positives']} positive) |\n"
            f"| as-of dates | {training['as_of_count']}: {training['as_of_first']} .. {training['as_of_last']} |\n"
            f"| online snapshot | {online['rows']} entities as of {online['as_of']} |\n"
            f"| features | {len(manifest['features'])} from {len(repo.views)} views |\n"
            f"| path | `{path}` |\n"
        ),
        description="latest published feature set",
    )
    get_run_logger().info("published feature set %s at %s", version, path)
    return {"version": version, "path": str(path), "manifest": manifest}
