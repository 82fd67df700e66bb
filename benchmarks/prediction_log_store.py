"""Benchmark: the prediction log on an object store (moto's S3 server on loopback) beside files.

    .venv/bin/python -m benchmarks.prediction_log_store [--records 100000] [--rows-per-request 1]
        [--writers 2] [--sync-requests 300]

Starts its own moto server (127.0.0.1, a free port, stopped at the end) and writes the same
records, shaped as the service logs them (``churn.predictions.record``, 15 features), four ways:

- files: ``PredictionLog`` (the embedded default: append + flush per request), one process;
- store, buffered: ``ObjectStoreLog`` with the default flush (1,000 records or 2 s), ``--writers``
  processes at once, as replicas of a fleet (the naive baseline it replaces: one object per request);
- store, durable before the answer: ``CHURN_LOG_FLUSH_SECONDS=0``, one PUT per request;

then times one monitor window read (``adapters.prediction_log.load_window``: list the hour's
objects, DuckDB reads them through s3fs) over the store and over the files. Prints rows/s, objects
and seconds. Each writer's time includes its final flush (every record is in the store).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

BUCKET = "churn-bench-log"


def _records(count: int, offset: int) -> list[dict]:
    from churn.predictions import record

    now = datetime.now(UTC)
    features = {f"f{k}": 0.5 * k for k in range(12)} | {
        "plan": "pro",
        "region": "eu",
        "channel": "web",
    }
    return [
        record(
            "customer_id",
            offset + k,
            request_id=f"{offset + k:032x}",
            row=0,
            ts=now.isoformat(),
            as_of=now.isoformat(),
            prediction=k % 2,
            probability=0.1 + (k % 80) / 100,
            model_version="1",
            latency_ms=1.2,
            features=features,
        )
        for k in range(count)
    ]


def _write(log, records: list[dict], per_request: int) -> float:
    started = time.perf_counter()
    for k in range(0, len(records), per_request):
        log.write(records[k : k + per_request])
    log.close()
    return time.perf_counter() - started


def _store_writer(
    url: str, count: int, offset: int, per_request: int, flush_seconds: float, out
) -> None:
    from bentos.prediction_log import ObjectStoreLog

    log = ObjectStoreLog(url, flush_records=1000, flush_seconds=flush_seconds)
    seconds = _write(log, _records(count, offset), per_request)
    out.put((seconds, log.objects_written))


def _run_writers(url: str, writers: int, count: int, per_request: int, flush_seconds: float):
    queue: multiprocessing.Queue = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(
            target=_store_writer, args=(url, count, w * count, per_request, flush_seconds, queue)
        )
        for w in range(writers)
    ]
    started = time.perf_counter()
    for p in procs:
        p.start()
    results = [queue.get(timeout=900) for _ in procs]
    for p in procs:
        p.join()
    return time.perf_counter() - started, sum(r[1] for r in results)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000, help="per writer")
    parser.add_argument("--rows-per-request", type=int, default=1)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--sync-requests", type=int, default=300)
    args = parser.parse_args()

    import boto3
    import duckdb

    from adapters import prediction_log
    from bentos.prediction_log import PredictionLog
    from ops import stack

    with tempfile.TemporaryDirectory() as tmp:
        directory, port = Path(tmp), stack.free_port()
        env = {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        os.environ.update(env)
        pid = stack.start_process(
            "moto-server",
            [str(stack.BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            {"TMPDIR": tmp},
            directory,
            directory,
        )
        try:
            stack.wait_healthy(f"{env['AWS_ENDPOINT_URL']}/moto-api/", 120, pid=pid)
            boto3.client("s3").create_bucket(Bucket=BUCKET)
            total = args.records * args.writers
            per = args.rows_per_request
            print(
                f"{args.writers} writers x {args.records:,} records, {per} row(s) per request, "
                f"on {os.cpu_count()} cores (load {os.getloadavg()[0]:.1f})"
            )

            files = directory / "files"
            seconds = _write(PredictionLog(files), _records(total, 0), per)
            print(
                f"  files, one process (append + flush per request)  {total / seconds:>10,.0f} rows/s"
            )

            url = f"s3://{BUCKET}/buffered"
            seconds, objects = _run_writers(url, args.writers, args.records, per, 2.0)
            print(
                f"  store, buffered (1,000 records / 2 s per object)  {total / seconds:>10,.0f} rows/s"
                f"  ({objects} objects, {seconds:.1f} s incl. the last flush)"
            )

            sync_url = f"s3://{BUCKET}/durable"
            sync_count = args.sync_requests * per
            seconds, objects = _run_writers(sync_url, args.writers, sync_count, per, 0)
            rate = args.writers * sync_count / seconds
            print(
                f"  store, durable before the answer (1 PUT/request) {rate:>10,.0f} rows/s"
                f"  ({objects} objects; {seconds / args.sync_requests * 1000:.1f} ms per request per writer)"
            )

            start = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
            end = start + timedelta(hours=2)
            for name, where in (("store", url), ("files", files)):
                con = duckdb.connect()
                con.execute("set TimeZone = 'UTC'")
                started = time.perf_counter()
                read = prediction_log.load_window(con, where, "customer_id", start, end)
                count = con.execute("select count(*) from preds").fetchone()[0]
                seconds = time.perf_counter() - started
                print(
                    f"  monitor window read over the {name:<5} {count:>10,} rows from {read.files:>4} "
                    f"objects/files in {seconds:6.2f} s ({count / seconds:,.0f} rows/s)"
                )
                con.close()
        finally:
            stack.stop_process("moto-server", directory)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
