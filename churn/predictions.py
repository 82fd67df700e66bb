"""The prediction-log record: written by the service, read by the monitor, defined only here.

One JSON line per answered prediction. Besides ``FIELDS``, a record carries the entity id under the
entity's own name (the feature repo's ``entity``, e.g. ``customer_id``). Files are JSON lines named
``<UTC hour>-<pid>-<process start>.jsonl``: the hour lets a reader skip files outside its window.
On an object store, where objects are immutable, each flush is a new object
``<UTC hour>-<pid>-<process start>-<sequence>.jsonl``.
"""

from __future__ import annotations

import re
from typing import Any

FIELDS = (
    "request_id",
    "row",
    "ts",
    "as_of",
    "prediction",
    "probability",
    "model_version",
    "latency_ms",
    "features",
)
"""``ts``: when the service answered (UTC, ISO 8601); ``as_of``: the time the features describe;
``row``: the position within its request; ``features``: the values scored, as received or looked up."""

FILE_NAME = re.compile(r"^(\d{8}T\d{2})-\d+(-[0-9a-f]+)?(-\d+)?\.jsonl$")
HOUR_FORMAT = "%Y%m%dT%H"


def file_name(hour: str, pid: int, start: str = "", sequence: int | None = None) -> str:
    """``<hour>-<pid>-<start>.jsonl``: ``start`` is unique per process start, so a restarted process
    (containers reuse pids) never appends to a file whose last line a crash may have torn. With a
    ``sequence`` (the object store's n-th object of this process start): ``...-<start>-<n>.jsonl``."""
    stem = f"{hour}-{pid}-{start}" if start else f"{hour}-{pid}"
    return f"{stem}-{sequence:06d}.jsonl" if sequence is not None else f"{stem}.jsonl"


def record(
    entity: str,
    entity_id: Any,
    *,
    request_id: str,
    row: int,
    ts: str,
    as_of: str,
    prediction: int,
    probability: float,
    model_version: str,
    latency_ms: float,
    features: dict[str, Any],
) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "row": row,
        "ts": ts,
        "as_of": as_of,
        entity: entity_id,
        "prediction": prediction,
        "probability": probability,
        "model_version": model_version,
        "latency_ms": latency_ms,
        "features": features,
    }
