"""Benchmark: online feature lookup from the latest snapshot, beside a naive pandas filter.

    .venv/bin/python -m benchmarks.online_lookup [--lookups 20000]

Loads the latest published online snapshot (run `make demo` first) into `churn.online.OnlineFeatures`
and times single-id and 100-id lookups against `frame[frame[entity].isin(ids)]` on the same data.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50, p99 = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]
    return f"p50 {p50 * 1e6:8.1f} us   p99 {p99 * 1e6:8.1f} us   mean {statistics.fmean(samples) * 1e6:8.1f} us"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lookups", type=int, default=20_000)
    args = parser.parse_args()

    from adapters.feature_sets import ONLINE_SNAPSHOT, latest, read_table
    from churn.online import OnlineFeatures
    from churn.settings import Settings

    feature_set = latest(Settings.from_env().features_dir)
    frame = read_table(feature_set.path / ONLINE_SNAPSHOT, feature_set.manifest.entity)
    entity, names = feature_set.manifest.entity, [f.name for f in feature_set.manifest.features]
    started = time.perf_counter()
    online = OnlineFeatures(frame, entity, names)
    build = time.perf_counter() - started
    ids = frame[entity].tolist()
    rng = random.Random(0)

    def timed(fn, batch: int, n: int) -> list[float]:
        out = []
        for _ in range(n):
            chosen = rng.sample(ids, batch)
            t = time.perf_counter()
            fn(chosen)
            out.append(time.perf_counter() - t)
        return out

    naive = lambda chosen: frame[frame[entity].isin(chosen)].to_dict("records")  # noqa: E731
    print(
        f"snapshot {feature_set.path.name}: {len(frame):,} entities x {len(names)} features; "
        f"index built in {build * 1e3:.0f} ms"
    )
    print(f"OnlineFeatures  1 id   {_percentiles(timed(online.lookup, 1, args.lookups))}")
    print(f"pandas filter   1 id   {_percentiles(timed(naive, 1, max(200, args.lookups // 50)))}")
    print(f"OnlineFeatures 100 ids {_percentiles(timed(online.lookup, 100, args.lookups // 10))}")
    print(f"pandas filter  100 ids {_percentiles(timed(naive, 100, max(200, args.lookups // 50)))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
