"""Benchmark: the prediction log on an object store (moto's S3 server on loopback) beside files.

    .venv/bin/python -m benchmarks.prediction_log_store [--records 100000] [--rows-per-request 1]
        [--writers 2] [--sync-requests 300] [--repeats 3] [--flush-records 1000]

Starts its own moto server (127.0.0.1, a free port, stopped at the end) and writes the same
records, shaped as the service logs them (``churn.predictions.record``, 15 features), four ways:

- files: ``PredictionLog`` (the embedded default: append + flush per request), one process;
- store, buffered: ``ObjectStoreLog`` with the default flush (1,000 records or 2 s; ``--flush-records``
  makes smaller objects, as a fleet at low traffic writes them), ``--writers`` processes at once;
- store, durable before the answer: ``CHURN_LOG_FLUSH_SECONDS=0``, one PUT per request;

then times one monitor window read (``adapters.prediction_log.load_window``: list the hour's
objects, fetch them concurrently through s3fs, DuckDB parses them) over the store and over the
files, and the naive read over the store (DuckDB opening every ``s3://`` object itself through the
registered fsspec filesystem, one after another). Prints rows/s in ``write`` (what a request pays),
the time until every record is stored (the last flush included), objects and seconds.
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
STORE_KEYS = {"s3_access_key": "bench", "s3_secret_key": "bench-secret"}


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


def _write(log, records: list[dict], per_request: int) -> tuple[float, float]:
    """Seconds spent in ``write`` (what the requests pay) and until the last record is stored."""
    started = time.perf_counter()
    for k in range(0, len(records), per_request):
        log.write(records[k : k + per_request])
    written = time.perf_counter() - started
    log.close()
    return written, time.perf_counter() - started


def _store_writer(url, count, offset, per_request, flush_seconds, flush_records, out):
    from bentos.prediction_log import ObjectStoreLog

    records = _records(count, offset)
    log = ObjectStoreLog(url, flush_records=flush_records, flush_seconds=flush_seconds)
    in_write, stored = _write(log, records, per_request)
    out.put((in_write, stored, log.objects_written))


def _run_writers(url, writers, count, per_request, flush_seconds, flush_records=1000):
    """Writer processes at once, as replicas: (slowest time in write, slowest to stored, objects)."""
    queue: multiprocessing.Queue = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(
            target=_store_writer,
            args=(url, count, w * count, per_request, flush_seconds, flush_records, queue),
        )
        for w in range(writers)
    ]
    for p in procs:
        p.start()
    results = [queue.get(timeout=900) for _ in procs]
    for p in procs:
        p.join()
    return max(r[0] for r in results), max(r[1] for r in results), sum(r[2] for r in results)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000, help="per writer")
    parser.add_argument("--rows-per-request", type=int, default=1)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--sync-requests", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="window reads, the best counts")
    parser.add_argument(
        "--flush-records", type=int, default=1000, help="records per object (the service's default)"
    )
    args = parser.parse_args()

    import duckdb

    from adapters import object_store, prediction_log
    from bentos.prediction_log import PredictionLog
    from ops import prod_stack, stack

    with tempfile.TemporaryDirectory() as tmp:
        directory, port = Path(tmp), stack.free_port()
        os.environ.update(prod_stack.s3_env(port, STORE_KEYS))
        try:
            prod_stack.start_moto(directory, port, STORE_KEYS, 120, buckets=(BUCKET,))
            total = args.records * args.writers
            per = args.rows_per_request
            print(
                f"{args.writers} writers x {args.records:,} records, {per} row(s) per request, "
                f"on {os.cpu_count()} cores (load {os.getloadavg()[0]:.1f})"
            )

            files = directory / "files"
            in_write, _ = _write(PredictionLog(files), _records(total, 0), per)
            print(
                f"  files, one process (append + flush per request)  {total / in_write:>9,.0f} rows/s"
            )

            url = f"s3://{BUCKET}/buffered"
            in_write, stored, objects = _run_writers(
                url, args.writers, args.records, per, 2.0, args.flush_records
            )
            print(
                f"  store, buffered ({args.flush_records:,} records / 2 s per object) "
                f"{total / in_write:>9,.0f} rows/s "
                f"in write(); all stored after {stored:.1f} s ({total / stored:,.0f} rows/s, "
                f"{objects} objects)"
            )

            sync_url = f"s3://{BUCKET}/durable"
            sync_count = args.sync_requests * per
            _, stored, objects = _run_writers(sync_url, args.writers, sync_count, per, 0)
            print(
                f"  store, durable before the answer (1 PUT/request) "
                f"{args.writers * sync_count / stored:>7,.0f} rows/s "
                f"({objects} objects; {stored / args.sync_requests * 1000:.1f} ms per request)"
            )

            start = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1)
            end = start + timedelta(hours=2)
            prediction_log.log_files(url, start, end)  # s3fs imported and connected before timing
            for name, where in (("store", url), ("files", files), ("store, naive", url)):
                best = float("inf")
                for _ in range(args.repeats):
                    con = duckdb.connect()
                    con.execute("set TimeZone = 'UTC'")
                    started = time.perf_counter()
                    if (
                        name == "store, naive"
                    ):  # DuckDB opens each object through fsspec, one by one
                        found = prediction_log.log_files(url, start, end)
                        object_store.register(con, [url])
                        prediction_log._read_lines(con, found)
                        count = con.execute("select count(*) from lines").fetchone()[0]
                        read_files = len(found)
                    else:
                        read = prediction_log.load_window(con, where, "customer_id", start, end)
                        count = con.execute("select count(*) from preds").fetchone()[0]
                        read_files = read.files
                    best = min(best, time.perf_counter() - started)
                    con.close()
                print(
                    f"  monitor window read, {name:<13}{count:>9,} rows from {read_files:>4} "
                    f"objects/files in {best:6.2f} s ({count / best:,.0f} rows/s, best of {args.repeats})"
                )
        finally:
            stack.stop_process("moto-server", directory)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
