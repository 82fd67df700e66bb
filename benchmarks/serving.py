"""Benchmark: the BentoML service under load, beside the seed article's FastAPI service, in one run.

    .venv/bin/python -m benchmarks.serving [--requests 3000] [--batch-requests 40]

Needs a packaged model (run `make demo` first). Serves the newest ``churn-classifier`` in the Bento
model store twice, one server at a time on a free loopback port: the seed-style FastAPI app
(benchmarks/seed_fastapi.py: a DataFrame per request, predict then predict_proba) under uvicorn, and
`bentoml serve bentos.service:ChurnService` as shipped (validation, compiled scoring, prediction
log). Each gets the same bounded load (benchmarks/loadgen.py): single-row /predict at concurrency 1,
8 and 32 over keep-alive connections, and /predict_batch with 1,000-row requests, a new connection
each (as batch jobs do; it also lets both service workers accept their share). The figures: throughput, p50/p99 client
latency and errors, the Bento's logged-prediction count against the answered count, and the cost
of writing one prediction-log record as a share of the Bento's p50.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.loadgen import LoadResult, run_load

LEVELS = (1, 8, 32)
BATCH_ROWS = 1000
BATCH_CONCURRENCY = 4


def _payloads(model_dir: Path, count: int) -> tuple[list[dict], list[dict]]:
    import pandas as pd

    from churn.scoring import plain_rows

    info = json.loads((model_dir / "schema.json").read_text())
    names = list(info["features"])
    snapshot = pd.read_parquet(model_dir / "online_snapshot.parquet")
    rows = snapshot.sample(n=count, replace=len(snapshot) < count, random_state=0)
    values = plain_rows(rows[names])
    ids = rows[info["entity"]].tolist()
    # the seed's FastAPI contract names the id customer_id: the built-in world's entity, as the Bento expects too
    single = [{info["entity"]: i, "features": dict(zip(names, v))} for i, v in zip(ids, values)]
    batches = [
        {"rows": single[k : k + BATCH_ROWS]} for k in range(0, count - BATCH_ROWS + 1, BATCH_ROWS)
    ]
    return single, batches


def stat_cpu_seconds(stat: str, ticks_per_second: int) -> float:
    """User plus system CPU seconds from a /proc/<pid>/stat line (utime and stime; the command
    name before them is in parentheses and may itself hold spaces and parentheses)."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / ticks_per_second


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds a process tree used between two readings (pid -> CPU seconds so far). A process
    that started in between counts from zero; one that ended in between is not in ``after`` and
    its time is not counted (the servers here keep their processes)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def _tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds used so far by ``pid`` and every live process below it."""
    from ops import stack

    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for p in [pid, *stack.descendants(pid)]:
        try:
            out[p] = stat_cpu_seconds(Path(f"/proc/{p}/stat").read_text(), ticks)
        except OSError:  # it exited since the listing
            continue
    return out


def _serve(name: str, cmd: list[str], env: dict, workdir: Path, port: int):
    """Start the server; return its pid and a function that stops it."""
    from ops import stack

    pid = stack.start_process(name, cmd, env, workdir, Path(__file__).resolve().parents[1])
    try:
        stack.wait_healthy(f"http://127.0.0.1:{port}/health", 240, workdir / f"{name}.log")
    except Exception:
        stack.stop_process(name, workdir)
        raise
    return pid, lambda: stack.stop_process(name, workdir)


def _measure(
    pid: int,
    port: int,
    single: list,
    batches: list,
    requests: int,
    batch_requests: int,
    batch_wrap: bool,
) -> tuple[dict[str, LoadResult], dict[str, float]]:
    """Each level's load result and the CPU seconds the server's process tree used during it."""
    out: dict[str, LoadResult] = {}
    cpu: dict[str, float] = {}

    def level(name: str, *args, **kwargs) -> None:
        before = _tree_cpu(pid)
        out[name] = run_load(port, *args, **kwargs)
        cpu[name] = cpu_used(before, _tree_cpu(pid))

    run_load(port, "/predict", single[:200], 200, 8)  # warm-up: connections, caches, lazy imports
    for c in LEVELS:
        level(f"c={c}", "/predict", single, requests if c > 1 else requests // 2, c)
    bodies = batches if batch_wrap else [b["rows"] for b in batches]
    run_load(port, "/predict_batch", bodies[:2], 2, 1)
    # batch jobs connect per request, which also spreads them over the service's workers
    level("batch", "/predict_batch", bodies, batch_requests, BATCH_CONCURRENCY, keep_alive=False)
    return out, cpu


def _log_write_cost(one: dict, calls: int = 5000) -> float:
    """Median seconds to append and flush one prediction record, as the service does per answer."""
    from bentos.prediction_log import PredictionLog

    with tempfile.TemporaryDirectory() as tmp:
        log = PredictionLog(Path(tmp))
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            log.write([one])
            samples.append(time.perf_counter() - started)
        log.close()
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--requests", type=int, default=3000, help="single-row requests per concurrency level"
    )
    parser.add_argument(
        "--batch-requests", type=int, default=40, help="1,000-row /predict_batch requests"
    )
    args = parser.parse_args()

    from adapters.bento_store import use_bentoml_home
    from churn.predictions import record
    from churn.settings import Settings
    from ops import stack

    settings = Settings.from_env()
    use_bentoml_home(settings)
    import bentoml

    try:
        model = bentoml.models.get(f"{settings.model_name}:latest")
    except bentoml.exceptions.NotFound:
        print(
            "no packaged model in the Bento model store: run `make demo` (or `make package`) first",
            file=sys.stderr,
        )
        return 1
    model_dir = Path(model.path)
    single, batches = _payloads(model_dir, max(args.requests, 10 * BATCH_ROWS))
    print(
        f"model {model.tag}; {args.requests} single-row requests per level (c=1: half), "
        f"{args.batch_requests} x {BATCH_ROWS}-row batches at c={BATCH_CONCURRENCY} (a connection each); "
        "2 cores shared by client and server\n"
    )

    results, cpu = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = stack.free_port()
        pid, stop = _serve(
            "baseline",
            [
                str(stack.BIN / "python"),
                "-m",
                "uvicorn",
                "benchmarks.seed_fastapi:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            {"BASELINE_MODEL_DIR": str(model_dir)},
            work / "baseline",
            port,
        )
        try:
            results["seed FastAPI"], cpu["seed FastAPI"] = _measure(
                pid, port, single, batches, args.requests, args.batch_requests, False
            )
        finally:
            stop()
        port = stack.free_port()
        log_dir = work / "predictions"
        env = {
            "BENTOML_HOME": str(settings.bentoml_home),
            "CHURN_PREDICTIONS_DIR": str(log_dir),
            "CHURN_API_TOKEN": "",
            "CHURN_MAX_BATCH": str(BATCH_ROWS),
        }
        pid, stop = _serve(
            "bentoml",
            stack.serve_command(port),
            env,
            work / "bento",
            port,
        )
        try:
            results["BentoML"], cpu["BentoML"] = _measure(
                pid, port, single, batches, args.requests, args.batch_requests, True
            )
        finally:
            stop()
        logged = sum(1 for f in log_dir.glob("*.jsonl") for _ in f.open())

    print(
        f"{'service':<14}{'load':<8}{'req/s':>9}{'rows/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
        f"{'server cpu s':>14}{'cores':>7}{'rows/cpu-s':>12}"
    )
    per_cpu: dict[str, dict[str, float]] = {}
    for service, runs in results.items():
        for level, r in runs.items():
            answered = (r.requests - r.errors) * (BATCH_ROWS if level == "batch" else 1)
            used = cpu[service][level]
            per_cpu.setdefault(service, {})[level] = answered / used if used else float("nan")
            print(
                f"{service:<14}{level:<8}{r.throughput:>9.1f}{answered / r.seconds:>10.0f}"
                f"{r.percentile(0.5):>9.2f}{r.percentile(0.99):>9.2f}{r.errors:>8}"
                f"{used:>14.2f}{used / r.seconds:>7.2f}{per_cpu[service][level]:>12,.0f}"
            )
    bento, base = results["BentoML"], results["seed FastAPI"]
    answered = sum(r.requests - r.errors for k, r in bento.items() if k != "batch") + 200
    answered += (
        sum(r.requests - r.errors for k, r in bento.items() if k == "batch") * BATCH_ROWS
        + 2 * BATCH_ROWS
    )
    entity = json.loads((model_dir / "schema.json").read_text())["entity"]
    one = record(
        entity,
        single[0][entity],
        request_id="0" * 32,
        row=0,
        ts="2026-01-01T00:00:00+00:00",
        as_of="2026-01-01T00:00:00",
        prediction=0,
        probability=0.5,
        model_version="1",
        latency_ms=1.0,
        features=single[0]["features"],
    )
    cost_ms = _log_write_cost(one) * 1000
    print(
        f"\n/predict c=8: BentoML {bento['c=8'].throughput / base['c=8'].throughput:.2f}x the baseline's throughput "
        f"(target >= 3x), p99 {bento['c=8'].percentile(0.99):.2f} ms (target < 25 ms)"
    )
    print(
        f"/predict_batch: {bento['batch'].throughput * BATCH_ROWS:,.0f} rows/s (target >= 50,000)"
    )
    print(
        f"prediction log: {logged} records for {answered} answered predictions "
        f"({'equal' if logged == answered else 'MISMATCH'}); one record costs {cost_ms * 1000:.0f} us = "
        f"{100 * cost_ms / bento['c=1'].percentile(0.5):.1f}% of the c=1 p50 (target <= 10%)"
    )
    print(
        "rows per CPU-second of the server's processes (rows/s per fully used core): "
        + "; ".join(
            f"{level} BentoML {per_cpu['BentoML'][level]:,.0f} vs baseline "
            f"{per_cpu['seed FastAPI'][level]:,.0f}"
            for level in ("c=8", "batch")
        )
    )
    errors = sum(r.errors for runs in results.values() for r in runs.values())
    return 0 if errors == 0 and logged == answered else 1


if __name__ == "__main__":
    raise SystemExit(main())
