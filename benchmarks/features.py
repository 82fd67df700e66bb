"""Benchmark: build the training set with the DuckDB feature views and with naive pandas, in one run.

    .venv/bin/python -m benchmarks.features                          # default scale (~2.4M events)
    .venv/bin/python -m benchmarks.features --customers 170000       # ~20M events
    .venv/bin/python -m benchmarks.features --customers 925000 --no-pandas   # ~100M events, DuckDB only
    .venv/bin/python -m benchmarks.features --partitions 4,8          # single build vs hash partitions

Data is generated once per scale under $CHURN_HOME/bench/. Each implementation runs in its own
process, timed from reading the sources to the written parquet (interpreter imports excluded), and
reports its own peak RSS. Pandas is stopped at an RSS cap (--pandas-cap-gb) so it fails cleanly instead of
swapping the machine; when it does, the report says so. When both finish, their outputs are
compared row by row before any figure is printed.

``--partitions`` compares the features flow's single build (``write_features``: one query, rows in
as-of, entity order) with the same training set in N hash partitions of the entity. Each partition
runs in a process of its own, one after another, as a task on its own machine would (its own DuckDB
connection with the same threads and memory limit), timed and measured (peak RSS) on its own.
Publishing (the digest of every part, which the validation stamp needs, the manifest and the
atomic rename) and reading the set back in order (what training pays) are timed in this process.
Partitioning cannot win on one 2-core machine: the figure that matters is the projection for N
machines, the slowest partition plus publishing, beside the single build.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path


def _peak_mib() -> float:
    """This process's own peak RSS (VmHWM). ``ru_maxrss`` is not: on Linux it keeps the high-water
    mark of the parent it was forked from (e.g. one that just generated the data) across exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_duckdb(spec: dict) -> dict:
    from adapters import feature_engine as engine
    from churn.settings import Settings

    settings = Settings.from_env(
        {
            "CHURN_HOME": spec["home"],
            "CHURN_RAW_DIR": spec["raw"],
            "CHURN_DUCKDB_THREADS": str(spec["threads"]),
            "CHURN_DUCKDB_MEMORY_LIMIT": spec["memory_limit"],
            "CHURN_FEATURE_REPO": spec["repo"],
        }
    )
    from datetime import datetime

    dates = [datetime.fromisoformat(d) for d in spec["dates"]]
    started = time.perf_counter()
    repo = engine.load_feature_repo(settings.feature_repo)
    with engine.connect(settings) as con:
        engine.register_sources(con, repo, engine.resolve_sources(repo, settings.raw_dir))
        rows = engine.build_spine(con, repo, dates, with_label=True)
        engine.evaluate_views(con, repo).write_parquet(spec["out"])
    return {"seconds": time.perf_counter() - started, "spine_rows": rows, "peak_mib": _peak_mib()}


def child_partition(spec: dict) -> dict:
    """One hash partition (or, with a count of 1, the single build) of the training set, as the
    features flow's partition task builds it."""
    from datetime import datetime

    from adapters import feature_engine as engine
    from adapters.feature_sets import part_file
    from churn.contracts import Partition
    from churn.settings import Settings

    settings = Settings.from_env(
        {
            "CHURN_HOME": spec["home"],
            "CHURN_RAW_DIR": spec["raw"],
            "CHURN_DUCKDB_THREADS": str(spec["threads"]),
            "CHURN_DUCKDB_MEMORY_LIMIT": spec["memory_limit"],
            "CHURN_FEATURE_REPO": spec["repo"],
        }
    )
    dates = [datetime.fromisoformat(d) for d in spec["dates"]]
    partition = Partition(spec["index"], spec["count"])
    started = time.perf_counter()
    repo = engine.load_feature_repo(settings.feature_repo)
    rows, positives = engine.write_features(
        settings,
        repo,
        dates,
        with_label=True,
        out=part_file(Path(spec["out"]), partition),
        partition=partition,
    )
    return {
        "seconds": time.perf_counter() - started,
        "spine_rows": rows,
        "positives": positives,
        "peak_mib": _peak_mib(),
    }


def child_pandas(spec: dict) -> dict:
    from datetime import datetime

    from benchmarks.pandas_features import build_training_set

    started = time.perf_counter()
    out = build_training_set(Path(spec["raw"]), [datetime.fromisoformat(d) for d in spec["dates"]])
    out.to_parquet(spec["out"], index=False)
    return {
        "seconds": time.perf_counter() - started,
        "spine_rows": len(out),
        "peak_mib": _peak_mib(),
    }


def _rss_gib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def _run_child(kind: str, spec: dict, timeout: float, cap_gib: float | None = None) -> dict:
    """Run one implementation in its own process; kill it past ``timeout`` or ``cap_gib`` of RSS."""
    spec_file = Path(spec["out"]).with_suffix(".json")
    spec_file.write_text(json.dumps(spec))
    out, err = Path(spec["out"]).with_suffix(".stdout"), Path(spec["out"]).with_suffix(".stderr")
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.features",
                "--child",
                kind,
                "--spec",
                str(spec_file),
            ],
            stdout=stdout,
            stderr=stderr,
        )
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                return {"error": f"did not finish within {timeout:.0f}s"}
            if cap_gib and _rss_gib(proc.pid) > cap_gib:
                proc.kill()
                proc.wait()
                return {"error": f"did not finish: stopped at the {cap_gib:g} GiB memory cap"}
            time.sleep(0.1)
    if proc.returncode != 0:
        last = (err.read_text().strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return {"error": f"did not finish: {last[:200]}"}
    return json.loads(out.read_text().strip().splitlines()[-1])


def _compare(duck: Path, naive: Path) -> str:
    """Row-by-row comparison; floats within 1e-9 relative (summation order differs)."""
    import pandas as pd

    key = ["customer_id", "as_of"]
    a = pd.read_parquet(duck).sort_values(key, ignore_index=True)
    b = pd.read_parquet(naive)[list(a.columns)].sort_values(key, ignore_index=True)
    try:
        pd.testing.assert_frame_equal(a, b, check_dtype=False, check_exact=False, rtol=1e-9)
    except AssertionError as exc:
        return f"DIFFERENT: {str(exc).splitlines()[0]}"
    return f"identical ({len(a):,} rows x {len(a.columns)} columns)"


def _publish_seconds(table: Path, staging: Path) -> float:
    """What turns built parts into a published set: every part's digest (the validation stamp),
    the manifest and the atomic rename of the staging directory."""
    from adapters.feature_sets import table_digest

    started = time.perf_counter()
    digest = table_digest(table)
    (staging / "manifest.json").write_text(json.dumps({"training_set": digest}))
    staging.rename(staging.with_name(staging.name + "-published"))
    return time.perf_counter() - started


def _read_seconds(table: Path, entity: str) -> tuple[float, object]:
    from adapters.feature_sets import read_table

    started = time.perf_counter()
    frame = read_table(table, entity)
    return time.perf_counter() - started, frame


def run_partitions(args: argparse.Namespace, base: dict, work: Path, events: int) -> int:
    """The single build beside N hash partitions, each partition timed in its own process."""
    import shutil

    import pandas as pd

    counts = [int(n) for n in args.partitions.split(",")]
    entity = "customer_id"
    runs: dict[int, dict] = {}
    for round_ in range(args.repeats):  # rounds interleave the builds: a noisy minute hits all
        for n in [1, *counts]:
            staging = work / f"r{round_}-n{n}"
            staging.mkdir()
            table = staging / "training_set.parquet"
            parts = []
            for index in range(n):
                result = _run_child(
                    "partition",
                    {
                        **base,
                        "out": str(table),
                        "threads": args.threads,
                        "memory_limit": args.memory_limit,
                        "index": index,
                        "count": n,
                    },
                    args.timeout,
                )
                if "error" in result:
                    print(f"N={n} partition {index}: {result['error']}")
                    return 1
                parts.append(result)
            read_s, frame = _read_seconds(table, entity)
            publish_s = _publish_seconds(table, staging)
            best = runs.setdefault(n, {"parts": parts, "publish": publish_s, "read": read_s})
            best["frame"] = frame
            best["publish"], best["read"] = (
                min(best["publish"], publish_s),
                min(best["read"], read_s),
            )
            best["parts"] = [  # each partition's best time and its highest peak over the rounds
                {
                    **b,
                    "seconds": min(b["seconds"], p["seconds"]),
                    "peak_mib": max(b["peak_mib"], p["peak_mib"]),
                }
                for b, p in zip(best["parts"], parts)
            ]
            shutil.rmtree(staging.with_name(staging.name + "-published"), ignore_errors=True)

    single = runs[1]
    expected = single["frame"]
    print(
        f"\nevents {events:,} | as-of dates {len(base['dates'])} | spine rows {len(expected):,} "
        f"| DuckDB threads {args.threads}, memory_limit {args.memory_limit} per connection "
        f"| best of {args.repeats} rounds"
    )
    for n in counts:
        try:
            pd.testing.assert_frame_equal(runs[n]["frame"], expected, check_exact=False, rtol=1e-9)
            same = "identical to the single build (rows, order, dtypes; floats within 1e-9)"
        except AssertionError as exc:
            same = f"DIFFERENT: {str(exc).splitlines()[0]}"
        print(f"N={n}: {same}")

    s_part = single["parts"][0]
    print(
        f"\n{'build':<34}{'seconds':>9}{'peak MiB':>10}{'publish s':>11}{'read s':>9}"
        f"{'vs single':>11}"
    )
    print(
        f"{'single (1 query)':<34}{s_part['seconds']:>9.2f}{s_part['peak_mib']:>10,.0f}"
        f"{single['publish']:>11.2f}{single['read']:>9.2f}{'1.00x':>11}"
    )
    for n in counts:
        run = runs[n]
        seconds = [p["seconds"] for p in run["parts"]]
        peak = max(p["peak_mib"] for p in run["parts"])
        here = sum(seconds) + run["publish"]
        machines = max(seconds) + run["publish"]
        total = s_part["seconds"] + single["publish"]
        print(
            f"{f'N={n}, one after another here':<34}{sum(seconds):>9.2f}{peak:>10,.0f}"
            f"{run['publish']:>11.2f}{run['read']:>9.2f}{total / here:>10.2f}x"
        )
        print(
            f"{f'N={n} on {n} machines (projected)':<34}{max(seconds):>9.2f}{peak:>10,.0f}"
            f"{run['publish']:>11.2f}{'':>9}{total / machines:>10.2f}x"
        )
        print(
            "    per partition s: "
            + " ".join(f"{x:.2f}" for x in seconds)
            + " | rows: "
            + " ".join(f"{p['spine_rows']:,}" for p in run["parts"])
        )
    print(
        "\nprojected = slowest partition + publish, each partition on a machine of its own with "
        "the same DuckDB threads; 'vs single' = (single build + publish) / that time"
    )
    return 0


def _ensure_world(args: argparse.Namespace, bench_dir: Path) -> Path:
    from adapters.raw_data import write_world
    from churn.synthetic import WorldParams

    params = WorldParams(
        customers=args.customers, months=args.months, activity=args.activity, seed=args.seed
    )
    raw = (
        Path(args.data)
        if args.data
        else bench_dir / f"c{args.customers}-m{args.months}-a{args.activity}-s{args.seed}"
    )
    marker = raw / "world.json"
    if not (marker.is_file() and json.loads(marker.read_text())["params"] == asdict(params)):
        print(
            f"generating {args.customers:,} customers x {args.months} months (activity {args.activity}) -> {raw}",
            flush=True,
        )
        started = time.perf_counter()
        write_world(params, raw)
        print(f"  generated in {time.perf_counter() - started:.0f}s", flush=True)
    return raw


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--months", type=int, default=18)
    parser.add_argument("--activity", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", help="raw data directory (default: $CHURN_HOME/bench/<scale>)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--memory-limit", default="3GB", help="DuckDB memory_limit (spills to disk beyond it)"
    )
    parser.add_argument("--no-pandas", action="store_true", help="skip the pandas baseline")
    parser.add_argument(
        "--pandas-cap-gb", type=float, default=16.0, help="RSS cap (GiB) at which pandas is stopped"
    )
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument(
        "--partitions",
        help="comma-separated partition counts, e.g. 4,8: the single build vs hash partitions "
        "(instead of the pandas comparison)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="with --partitions: rounds of every build; each time is its best round's",
    )
    parser.add_argument(
        "--child", choices=["duckdb", "pandas", "partition"], help=argparse.SUPPRESS
    )
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        spec = json.loads(Path(args.spec).read_text())
        children = {"duckdb": child_duckdb, "pandas": child_pandas, "partition": child_partition}
        result = children[args.child](spec)
        print(json.dumps(result))
        return 0

    from adapters import feature_engine as engine
    from churn.featurestore import as_of_schedule
    from churn.settings import Settings

    settings = Settings.from_env()
    raw = _ensure_world(args, settings.bench_dir)
    repo = engine.load_feature_repo(settings.feature_repo)
    with engine.connect(settings) as con:
        engine.register_sources(con, repo, engine.resolve_sources(repo, raw))
        bounds = engine.data_bounds(con, repo)
        events = sum(
            con.execute(f"select count(*) from {t}").fetchall()[0][0]
            for t in ("transactions", "events", "tickets")
        )
    dates = as_of_schedule(repo.config.spine, bounds.covered_from, bounds.covered_to)

    settings.bench_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=settings.bench_dir))
    base = {
        "raw": str(raw),
        "dates": [d.isoformat() for d in dates],
        "home": str(work),
        "repo": str(settings.feature_repo),
    }
    if args.partitions:
        import shutil

        try:
            return run_partitions(args, base, work, events)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    results = {
        "duckdb": _run_child(
            "duckdb",
            {
                **base,
                "out": str(work / "duckdb.parquet"),
                "threads": args.threads,
                "memory_limit": args.memory_limit,
            },
            args.timeout,
        )
    }
    if not args.no_pandas:
        results["pandas"] = _run_child(
            "pandas",
            {**base, "out": str(work / "pandas.parquet")},
            args.timeout,
            cap_gib=args.pandas_cap_gb,
        )

    if all("error" not in r for r in results.values()) and "pandas" in results:
        print(f"outputs: {_compare(work / 'duckdb.parquet', work / 'pandas.parquet')}")

    print(
        f"\nevents {events:,} | as-of dates {len(dates)} | threads {args.threads} "
        f"| DuckDB memory_limit {args.memory_limit}"
    )
    print(f"{'impl':<8}{'spine rows':>12}{'seconds':>10}{'events/s':>14}{'peak MiB':>10}")
    for name, r in results.items():
        if "error" in r:
            print(f"{name:<8}  {r['error']}")
        else:
            print(
                f"{name:<8}{r['spine_rows']:>12,}{r['seconds']:>10.2f}"
                f"{events / r['seconds']:>14,.0f}{r['peak_mib']:>10,.0f}"
            )
    d, p = results["duckdb"], results.get("pandas")
    if p and "error" not in p and "error" not in d:
        print(
            f"ratio    speed x{p['seconds'] / d['seconds']:.1f}, "
            f"memory x{p['peak_mib'] / d['peak_mib']:.1f} (pandas / duckdb)"
        )
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return 0 if "error" not in d else 1


if __name__ == "__main__":
    sys.exit(main())
