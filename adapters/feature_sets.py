"""Versioned feature sets on disk: stage, publish atomically, find the latest good one.

Layout under ``CHURN_FEATURES_DIR`` (default ``$CHURN_HOME/features``)::

    runs/<version>/training_set.parquet     labelled, point-in-time training rows
    runs/<version>/online_snapshot.parquet  latest feature vector per active entity
    runs/<version>/manifest.json            FeatureSetManifest: counts, as-of range, SQL hashes, digests
    latest.json                             {"version": ...}: replaced only after a full success

On an object store (``CHURN_FEATURES_DIR`` or ``CHURN_STORAGE`` a URL) the layout is the same
under the URL: a build stages its files locally (``Settings.feature_set_cache``), uploads the version,
and then writes ``latest.json`` (one PUT, so readers see the old or the new pointer); a reader
downloads a version once into the same local cache and reads it from there.

A set built in N > 1 hash partitions (``FeaturesParams.partitions``) holds each table as a
directory of the same name with one ``part-NNNNN.parquet`` per partition (some may be empty);
``read_table`` reads either layout into the same frame, ordered by as-of then entity as one file is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from adapters import object_store
from churn.contracts import FeatureSet, FeatureSetManifest, Partition
from churn.featurestore import AS_OF
from churn.settings import Location, Settings, is_url

if TYPE_CHECKING:
    import pandas as pd

TRAINING_SET = "training_set.parquet"
ONLINE_SNAPSHOT = "online_snapshot.parquet"
MANIFEST = "manifest.json"
LATEST = "latest.json"


PART_GLOB = "part-*.parquet"


class NoFeatureSetError(FileNotFoundError):
    """No feature set has been published yet under the features directory."""


def part_file(table: Path, partition: Partition) -> Path:
    """Where one partition of ``table`` is written: the table's own file when there is only one
    partition, else ``<table>/part-NNNNN.parquet`` (the directory is created)."""
    if partition.count == 1:
        return table
    table.mkdir(exist_ok=True)
    return table / f"part-{partition.index:05d}.parquet"


def table_files(table: Path) -> list[Path]:
    """The parquet files of a table: the file itself, or its parts in partition order."""
    if table.is_file():
        return [table]
    parts = sorted(table.glob(PART_GLOB)) if table.is_dir() else []
    if not parts:
        raise NoFeatureSetError(
            f"{table}: neither a parquet file nor a directory of {PART_GLOB}: rebuild the features"
        )
    return parts


def read_table(table: Path, entity: str, columns: list[str] | None = None) -> pd.DataFrame:
    """A feature table as one frame, whatever its layout: rows ordered by as-of, then entity (the
    order one file is written in), so a partitioned set reads exactly like a single-file one.

    The parts are read as one Arrow dataset and converted once: dtypes are decided over every row,
    as for one file (an integer column with a null in any part is float64 in all of it).
    """
    import pandas as pd

    if table.is_file():
        return pd.read_parquet(table, columns=columns)
    table_files(table)  # a clear error when it is neither
    keys = [AS_OF, entity]
    wanted = None if columns is None else [*columns, *(k for k in keys if k not in columns)]
    frame = pd.read_parquet(table, columns=wanted).sort_values(keys, ignore_index=True)
    return frame if columns is None else frame[columns]


def table_digest(table: Path) -> str:
    """sha256 of a table's bytes: the file's own digest, or one over every part's name and digest."""
    from adapters.feature_engine import file_digest

    files = table_files(table)
    if files == [table]:
        return file_digest(str(table))
    lines = "".join(f"{p.name} {file_digest(str(p))}\n" for p in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def copy_table(settings: Settings, table: Path, target: Path, entity: str) -> None:
    """One parquet file at ``target`` with the table's rows in its order: a copy of a single-file
    table, or its parts merged by DuckDB in as-of, entity order, as the single build writes it."""
    from adapters.feature_engine import connect

    files = table_files(table)
    if files == [table]:
        shutil.copyfile(table, target)
        return
    with connect(settings) as con:
        con.read_parquet([str(p) for p in files]).order(f'{AS_OF}, "{entity}"').write_parquet(
            str(target)
        )


def _local_root(features_dir: Location, cache: Path | None) -> Path:
    """Where versions live on this machine: the features directory, or for an object store the cache."""
    if not is_url(features_dir):
        return Path(features_dir)
    if cache is None:
        raise ValueError(f"feature sets on {features_dir} need a local cache directory")
    return cache


def new_staging(features_dir: Location, cache: Path | None = None) -> tuple[str, Path]:
    """A fresh version id and an empty staging directory for it (local, also for an object store)."""
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    staging = _local_root(features_dir, cache) / "runs" / f".staging-{version}"
    staging.mkdir(parents=True)
    return version, staging


def staged_version(staging: Path) -> str:
    """The version a staging directory (``new_staging``) is for."""
    return staging.name.removeprefix(".staging-")


def discard_staging(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def publish(features_dir: Location, staging: Path, manifest: FeatureSetManifest) -> FeatureSet:
    """Write the manifest, move the staged files into place, then point ``latest.json`` at them.

    The pointer is replaced with an atomic rename, so readers see either the old or the new set. On
    an object store the version's objects are uploaded first and the pointer is written last.
    """
    (staging / MANIFEST).write_text(manifest.model_dump_json(indent=2))
    final = staging.parent / manifest.version
    staging.rename(final)
    if is_url(features_dir):
        remote = f"{str(features_dir).rstrip('/')}/runs/{manifest.version}"
        object_store.upload_dir(final, remote)
        object_store.write_bytes(
            object_store.join(features_dir, LATEST),
            json.dumps({"version": manifest.version, "path": remote}).encode(),
        )
        return FeatureSet(manifest.version, final, manifest)
    pointer = Path(features_dir) / LATEST
    tmp = pointer.with_name(f".{LATEST}.{manifest.version}")
    tmp.write_text(json.dumps({"version": manifest.version, "path": str(final)}))
    os.replace(tmp, pointer)
    return FeatureSet(manifest.version, final, manifest)


def exists(features_dir: Location) -> bool:
    """A feature set has been published (whether this version can read it is ``latest``'s to say)."""
    if is_url(features_dir):
        return object_store.exists(object_store.join(features_dir, LATEST))
    return (Path(features_dir) / LATEST).is_file()


def latest(features_dir: Location, cache: Path | None = None) -> FeatureSet:
    """The latest published feature set (from an object store: its local copy in ``cache``)."""
    if not exists(features_dir):
        raise NoFeatureSetError(
            f"no feature set published under {features_dir}: run the features flow first"
        )
    pointer = object_store.join(features_dir, LATEST)
    version = json.loads(object_store.read_bytes(pointer))["version"]
    if not is_url(features_dir):
        return load(Path(features_dir) / "runs" / version)
    local = _local_root(features_dir, cache) / "runs" / version
    if not (local / MANIFEST).is_file():  # not here yet: download, then move into place whole
        partial = local.with_name(f".download-{version}-{uuid.uuid4().hex[:6]}")
        object_store.download_dir(f"{str(features_dir).rstrip('/')}/runs/{version}", partial)
        try:
            partial.rename(local)
        except OSError:  # another reader was first
            shutil.rmtree(partial, ignore_errors=True)
    return load(local)


def load(path: Path) -> FeatureSet:
    from pydantic import ValidationError

    where = Path(path) / MANIFEST
    try:
        manifest = FeatureSetManifest.model_validate_json(where.read_text())
    except ValidationError as exc:
        raise NoFeatureSetError(
            f"{where} does not hold a feature-set manifest of this version ({exc.error_count()} problems, "
            f"e.g. {exc.errors()[0]['loc']}): rebuild the features (`make features`)"
        ) from None
    return FeatureSet(manifest.version, Path(path), manifest)
