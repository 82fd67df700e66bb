"""The level-3 loop on the synthetic world, end to end: ``churn simulate``.

1. Traffic: customers' features at a few as-of dates of the generator's drifted period (computed by
   the feature SQL over history + drift data) go to the running service's /predict_batch, one burst
   per date; the monitor judges each burst's window (drift alerts fire; no labels have matured).
2. Labels: the drift period's events are delivered into the raw data, so outcomes mature.
3. The monitor judges the bursts again: matured labels give AUC; drift or an AUC drop in N of the
   last M windows fires retraining (features rebuilt, gates, promotion, packaging); the service
   picks the new champion up from the model store and answers with its version.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from adapters import feature_engine
from adapters.raw_data import DRIFT_DIR
from churn.scoring import plain_rows
from churn.settings import ServiceSettings, Settings, is_url
from churn.synthetic import WorldParams


@dataclass
class Burst:
    as_of: datetime
    start: datetime
    end: datetime
    rows: int


def local_raw_dir(settings: Settings) -> Path:
    """The raw data directory: the loop delivers the drift period by renaming directories, which an
    object store cannot do."""
    if not isinstance(settings.raw_dir, Path):
        raise RuntimeError(
            f"the simulate loop delivers into a raw data directory on disk, and CHURN_RAW_DIR is "
            f"{settings.raw_dir}: set CHURN_RAW_DIR to a local path for it (the other stores may stay)"
        )
    return settings.raw_dir


def drift_dates(settings: Settings, count: int) -> list[datetime]:
    """``count`` as-of dates in the drift period whose labels mature before the drifted data ends."""
    raw = local_raw_dir(settings)
    world = json.loads((raw / "world.json").read_text())
    if not (raw / DRIFT_DIR).is_dir():
        raise RuntimeError(
            f"{raw} has no {DRIFT_DIR}/ period (already delivered, or generated without one): "
            "run `churn generate --drift-months 2` first"
        )
    params = WorldParams(**world["params"])
    history_end = pd.Timestamp(params.history_end).to_pydatetime()
    horizon = feature_engine.load_feature_repo(settings.feature_repo).config.spine.horizon_days
    last = pd.Timestamp(params.world_end).to_pydatetime() - timedelta(days=horizon + 1)
    if last <= history_end:
        raise RuntimeError(
            f"the drift period ({params.drift_months} months) is shorter than the {horizon}-day label "
            "horizon: generate with more --drift-months"
        )
    return [history_end + (last - history_end) * (i + 1) / count for i in range(count)]


def combined_world(settings: Settings) -> Path:
    """History and drift tables side by side as one raw directory (the world as it will be known)."""
    raw = local_raw_dir(settings)
    out = settings.simulate_dir / "world"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with feature_engine.connect(settings) as con:
        for table in sorted(raw.glob("*.parquet")):
            parts = [str(table)] + (
                [str(d)] if (d := raw / DRIFT_DIR / table.name).is_file() else []
            )
            con.execute(
                "copy (select * from read_parquet($parts, union_by_name = true)) "
                f"to '{out / table.name}' (format parquet)",
                {"parts": parts},
            )
    shutil.copyfile(raw / "world.json", out / "world.json")
    return out


def send_burst(
    client: httpx.Client,
    frame: pd.DataFrame,
    entity: str,
    names: list[str],
    as_of: datetime,
    batch: int = 1000,
) -> int:
    rows = [
        {
            entity: int(i) if isinstance(i, (int, np.integer)) else i,
            "features": dict(zip(names, v)),
            "as_of": as_of.isoformat(),
        }
        for i, v in zip(frame[entity].tolist(), plain_rows(frame[names]))
    ]
    for k in range(0, len(rows), batch):
        response = client.post("/predict_batch", json={"rows": rows[k : k + batch]})
        if response.status_code != 200:
            raise RuntimeError(
                f"the service refused a batch: {response.status_code} {response.text[:300]}"
            )
    return len(rows)


def wait_for_log(settings: Settings) -> None:
    """Until a burst's records are in the prediction log the monitor reads: on an object store each
    service worker writes its buffer within ``CHURN_LOG_FLUSH_SECONDS`` (the service's setting, read
    from the same environment), so a window judged sooner would miss them for good."""
    if is_url(settings.predictions_dir):
        time.sleep(ServiceSettings.from_env().log_flush_seconds + 1)


def deliver_labels(settings: Settings, combined: Path) -> None:
    """The drift period's events arrive: the raw tables become history + drift (swapped in whole)."""
    raw = local_raw_dir(settings)
    staging = raw.with_name(raw.name + ".delivering")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(combined, staging)
    shutil.move(
        str(raw / DRIFT_DIR),
        str(staging.with_name(raw.name + ".drift-delivered")),
    )
    backup = raw.with_name(raw.name + ".before-delivery")
    shutil.rmtree(backup, ignore_errors=True)
    raw.rename(backup)
    staging.rename(raw)


def wait_for_version(client: httpx.Client, old_version: str, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version = client.get("/health").json()["model_version"]
        if version != old_version:
            return version
        time.sleep(1)
    return None
