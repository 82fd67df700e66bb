"""Versioned feature sets on disk: stage, publish atomically, find the latest good one.

Layout under ``CHURN_FEATURES_DIR`` (default ``$CHURN_HOME/features``)::

    runs/<version>/training_set.parquet     labelled, point-in-time training rows
    runs/<version>/online_snapshot.parquet  latest feature vector per active entity
    runs/<version>/manifest.json            FeatureSetManifest: counts, as-of range, SQL hashes, digests
    latest.json                             {"version": ...}: replaced only after a full success
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

from churn.contracts import FeatureSet, FeatureSetManifest

TRAINING_SET = "training_set.parquet"
ONLINE_SNAPSHOT = "online_snapshot.parquet"
MANIFEST = "manifest.json"
LATEST = "latest.json"


class NoFeatureSetError(FileNotFoundError):
    """No feature set has been published yet under the features directory."""


def new_staging(features_dir: Path) -> tuple[str, Path]:
    """A fresh version id and an empty staging directory for it."""
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    staging = Path(features_dir) / "runs" / f".staging-{version}"
    staging.mkdir(parents=True)
    return version, staging


def staged_version(staging: Path) -> str:
    """The version a staging directory (``new_staging``) is for."""
    return staging.name.removeprefix(".staging-")


def discard_staging(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def publish(features_dir: Path, staging: Path, manifest: FeatureSetManifest) -> FeatureSet:
    """Write the manifest, move the staged files into place, then point ``latest.json`` at them.

    The pointer is replaced with an atomic rename, so readers see either the old or the new set.
    """
    (staging / MANIFEST).write_text(manifest.model_dump_json(indent=2))
    final = Path(features_dir) / "runs" / manifest.version
    staging.rename(final)
    pointer = Path(features_dir) / LATEST
    tmp = pointer.with_name(f".{LATEST}.{manifest.version}")
    tmp.write_text(json.dumps({"version": manifest.version, "path": str(final)}))
    os.replace(tmp, pointer)
    return FeatureSet(manifest.version, final, manifest)


def exists(features_dir: Path) -> bool:
    """A feature set has been published (whether this version can read it is ``latest``'s to say)."""
    return (Path(features_dir) / LATEST).is_file()


def latest(features_dir: Path) -> FeatureSet:
    """The latest published feature set."""
    pointer = Path(features_dir) / LATEST
    if not pointer.is_file():
        raise NoFeatureSetError(
            f"no feature set published under {features_dir}: run the features flow first"
        )
    return load(Path(features_dir) / "runs" / json.loads(pointer.read_text())["version"])


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
