"""`churn replay`: any parquet of feature rows sent to a running service, paced window by window by
a time column, so a user can rehearse the monitoring loop on their own data (the synthetic world has
`churn simulate`). Outcomes can be delivered afterwards, as they would arrive later in real life."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from churn.scoring import plain_rows


class ReplayError(ValueError):
    """The file cannot be replayed against this service; the message says what is missing."""


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    rows: pd.DataFrame


def load(path: Path, entity: str, features: list[str], time_column: str | None) -> pd.DataFrame:
    """The file's rows, checked to carry the service's entity and every feature it scores."""
    frame = pd.read_parquet(path)
    needed = [entity, *features, *([time_column] if time_column else [])]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ReplayError(
            f"{path}: missing columns {missing} (the service scores {entity} + {features})"
        )
    if time_column:
        frame[time_column] = pd.to_datetime(frame[time_column]).dt.tz_localize(None)
        frame = frame.sort_values(time_column, kind="stable", ignore_index=True)
    return frame


def windows(frame: pd.DataFrame, time_column: str | None, every: timedelta) -> list[Window]:
    """Consecutive [start, end) windows of ``every`` over the time column (one window without one)."""
    if time_column is None:
        now = datetime.utcnow().replace(microsecond=0)
        return [Window(now, now + every, frame)]
    first = frame[time_column].min().floor("D").to_pydatetime()
    last = frame[time_column].max().to_pydatetime()
    out, start = [], first
    while start <= last:
        end = start + every
        part = frame[(frame[time_column] >= start) & (frame[time_column] < end)]
        if len(part):
            out.append(Window(start, end, part))
        start = end
    return out


def send(
    client: Any,
    rows: pd.DataFrame,
    entity: str,
    features: list[str],
    time_column: str | None,
    batch: int = 1000,
) -> int:
    """Every row to /predict_batch (its time as the row's as_of); the number answered."""
    values = plain_rows(rows[features])
    ids = [v.item() if hasattr(v, "item") else v for v in rows[entity].tolist()]
    times = [t.isoformat() for t in rows[time_column]] if time_column else [None] * len(rows)
    body = [
        {entity: i, "features": dict(zip(features, v, strict=True)), **({"as_of": t} if t else {})}
        for i, v, t in zip(ids, values, times, strict=True)
    ]
    for k in range(0, len(body), batch):
        response = client.post("/predict_batch", json={"rows": body[k : k + batch]})
        if response.status_code != 200:
            raise ReplayError(
                f"the service refused a batch: {response.status_code} {response.text[:300]}"
            )
    return len(body)


def deliver(outcomes: Path, into: Path) -> Path:
    """Outcomes arrive: the file is copied (whole, then renamed) into the raw data where label.sql reads it."""
    into.mkdir(parents=True, exist_ok=True)
    target = into / outcomes.name
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(outcomes, tmp)
    tmp.rename(target)
    return target
