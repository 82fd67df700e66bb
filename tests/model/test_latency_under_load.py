"""The latency gate judges the model, not the machine: the same model gets the same verdict on an
idle machine and while bounded busy loops (started and stopped here) hold every core."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest
from threadpoolctl import threadpool_limits

from churn import gates
from churn.params import GateParams
from churn.scoring import compile_scorer, plain_rows

pytestmark = pytest.mark.slow


def _spin(deadline: float) -> None:
    while time.monotonic() < deadline:
        pass


def verdict(scorer, rows) -> tuple[dict[str, str], gates.Latency]:
    params = GateParams()
    with threadpool_limits(limits=1):
        latency = gates.time_scoring(
            scorer.proba, rows, params.latency.calls, params.latency.rounds
        )
    statuses = {}
    for name, timing, maximum in (
        ("single", latency.single_row, params.latency.max_p99_single_ms),
        ("batch", latency.batch, params.latency.max_p99_batch_ms),
    ):
        check = gates.at_most("latency", name, timing.cpu_p99, maximum)
        statuses[name] = gates.latency_check(check, name, timing, latency.rounds, maximum).status
    return statuses, latency


def test_same_verdict_idle_and_with_every_core_busy(default_model):
    pipe, test, schema = default_model
    rows = plain_rows(test[schema.names].sample(n=1000, random_state=0))
    scorer = compile_scorer(pipe, schema.names, schema.dtypes()).verified(rows[:256])
    idle, _ = verdict(scorer, rows)

    loops = 3 * (os.cpu_count() or 2)
    deadline = time.monotonic() + 120  # bounded even if this test dies before stopping them
    busy = [
        multiprocessing.Process(target=_spin, args=(deadline,), daemon=True) for _ in range(loops)
    ]
    for process in busy:
        process.start()
    try:
        time.sleep(1)  # the loops are running
        loaded, latency = verdict(scorer, rows)
    finally:
        for process in busy:
            process.terminate()
        for process in busy:
            process.join(10)
    assert idle == loaded == {"single": "PASS", "batch": "PASS"}
    assert (
        latency.single_row.cpu_p99 <= latency.single_row.wall_p99 + 1
    )  # both figures are reported
