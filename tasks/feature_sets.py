"""Versioned feature sets on disk: stage, publish atomically, find the latest good one.

Layout under ``CHURN_HOME/features``::

    runs/<version>/training_set.parquet     labelled, point-in-time training rows
    runs/<version>/online_snapshot.parquet  latest feature vector per active entity
    runs/<version>/manifest.json            counts, as-of range, SQL hashes, source digests
    latest.json                             {"version": ...}: replaced only after a full success
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

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


def discard_staging(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def publish(features_dir: Path, version: str, staging: Path, manifest: dict) -> Path:
    """Write the manifest, move the staged files into place, then point ``latest.json`` at them.

    The pointer is replaced with an atomic rename, so readers see either the old or the new set.
    """
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    final = Path(features_dir) / "runs" / version
    staging.rename(final)
    pointer = Path(features_dir) / LATEST
    tmp = pointer.with_name(f".{LATEST}.{version}")
    tmp.write_text(json.dumps({"version": version, "path": str(final)}))
    os.replace(tmp, pointer)
    return final


def latest_feature_set(features_dir: Path) -> Path:
    """Directory of the latest published feature set."""
    pointer = Path(features_dir) / LATEST
    if not pointer.is_file():
        raise NoFeatureSetError(f"no feature set published under {features_dir}: run the features flow first")
    version = json.loads(pointer.read_text())["version"]
    return Path(features_dir) / "runs" / version


def read_manifest(feature_set: Path) -> dict:
    return json.loads((Path(feature_set) / MANIFEST).read_text())
