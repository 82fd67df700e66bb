"""The service's prediction log: a restarted process never appends to a line a crash tore."""

from __future__ import annotations

import json

from bentos.prediction_log import PredictionLog
from churn.predictions import FILE_NAME, record


def one(k: int) -> dict:
    return record(
        "id",
        k,
        request_id=f"r{k}",
        row=0,
        ts="2026-01-01T00:00:00+00:00",
        as_of="2026-01-01T00:00:00",
        prediction=0,
        probability=0.1,
        model_version="1",
        latency_ms=1.0,
        features={"x": 1.0},
    )


def test_a_restart_with_the_same_pid_writes_a_file_of_its_own(tmp_path):
    first = PredictionLog(tmp_path)
    first.write([one(1)])
    (torn,) = tmp_path.glob("*.jsonl")
    with torn.open("ab") as handle:  # the process dies mid-record
        handle.write(b'{"request_id": "r2", "ro')
    second = PredictionLog(tmp_path)  # containers reuse pids: same pid, same hour
    second.write([one(3)])
    second.close()
    files = sorted(tmp_path.glob("*.jsonl"))
    assert len(files) == 2 and all(FILE_NAME.match(f.name) for f in files)
    fresh = next(f for f in files if f != torn)
    assert [json.loads(line)["request_id"] for line in fresh.read_text().splitlines()] == ["r3"]
