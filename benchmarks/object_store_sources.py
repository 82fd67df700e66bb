"""Benchmark: the features flow's reads over an object store (moto's S3 server on loopback) beside
the same files on local disk, in one run.

    .venv/bin/python -m benchmarks.object_store_sources [--customers 20000] [--repeats 2]

Uses (or generates) the features benchmark's world under $CHURN_HOME/bench/, uploads it to its own
moto server (127.0.0.1, a free port, stopped at the end) and times, local and on the store, best of
``--repeats``: checking the sources as the features flow does (list, register with DuckDB, row
counts, data bounds, sha256 of every file) and building the training set (spine, labels, every
view, written to a local parquet). The outputs are compared before any figure is printed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

BUCKET = "churn-bench-raw"
STORE_KEYS = {"s3_access_key": "bench", "s3_secret_key": "bench-secret"}


def _best(repeats: int, run):
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import pandas as pd

    from adapters import feature_engine as engine
    from adapters import object_store
    from benchmarks.features import _ensure_world
    from churn.featurestore import as_of_schedule
    from churn.settings import Settings
    from ops import prod_stack, stack

    settings = Settings.from_env()
    world = argparse.Namespace(customers=args.customers, months=18, activity=1.0, seed=7, data=None)
    raw = _ensure_world(world, settings.bench_dir)
    repo = engine.load_feature_repo(settings.feature_repo)
    size = sum(p.stat().st_size for p in raw.rglob("*.parquet") if p.parent == raw)

    with tempfile.TemporaryDirectory() as tmp:
        directory, port = Path(tmp), stack.free_port()
        os.environ.update(prod_stack.s3_env(port, STORE_KEYS))
        try:
            prod_stack.start_moto(directory, port, STORE_KEYS, 120, buckets=(BUCKET,))
            url = f"s3://{BUCKET}/raw"
            started = time.perf_counter()
            for path in sorted(raw.glob("*.parquet")):
                object_store.filesystem(url)[0].put_file(str(path), f"{BUCKET}/raw/{path.name}")
            upload = time.perf_counter() - started
            with engine.connect(settings) as con:
                engine.register_sources(con, repo, engine.resolve_sources(repo, raw))
                bounds = engine.data_bounds(con, repo)
            dates = as_of_schedule(repo.config.spine, bounds.covered_from, bounds.covered_to)
            print(
                f"{args.customers:,} customers: {size / 2**20:,.0f} MiB of parquet in "
                f"{len(list(raw.glob('*.parquet')))} files (uploaded in {upload:.1f} s), "
                f"{len(dates)} as-of dates; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
            )
            results = {}
            for name, where in (("local", raw), ("store", url)):
                local = Settings.from_env({**os.environ, "CHURN_RAW_DIR": str(where)})
                check, sources = _best(args.repeats, lambda s=local: engine.check_sources(s, repo))
                out = directory / f"training-{name}.parquet"
                build, counts = _best(
                    args.repeats,
                    lambda s=local, o=out: engine.write_features(s, repo, dates, True, o),
                )
                results[name] = (check, build, counts, pd.read_parquet(out), sources)
            local_frame, store_frame = results["local"][3], results["store"][3]
            pd.testing.assert_frame_equal(local_frame, store_frame)
            assert [s.rows for s in results["local"][4].sources.values()] == [
                s.rows for s in results["store"][4].sources.values()
            ]
            for name, (check, build, _counts, frame, _) in results.items():
                print(
                    f"  {name:<6} check sources (counts, bounds, sha256) {check:6.2f} s   "
                    f"training set ({len(frame):,} rows) {build:6.2f} s"
                )
            print("  training sets identical row for row")
        finally:
            stack.stop_process("moto-server", directory)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
