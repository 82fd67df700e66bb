"""Benchmark: monitoring 1,000,000 logged predictions against a 100,000-row reference, beside
Evidently alone on the full data, in one run.

    .venv/bin/python -m benchmarks.monitoring [--rows 1000000] [--reference 100000] [--skip-evidently-full]

Needs the demo's data (`make demo`): feature rows of the latest training set become the reference
(resampled to --reference rows) and the logged traffic (--rows predictions written as the service
writes them, with a shift in a third of the features, spread over hourly files). Timed, as the
monitor flow runs them: reading the window and dropping malformed lines (DuckDB), window metrics,
PSI of every feature and of the prediction over all rows (DuckDB bins from the reference), the
matured-label join through label.sql, and Evidently's HTML report on a 5,000-row sample. Then
Evidently's DataDriftPreset alone on the full frames (the naive way). Prints seconds and peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def _write_log(directory: Path, frame, entity: str, names: list[str], start: datetime) -> None:
    import numpy as np
    import orjson

    from churn.predictions import HOUR_FORMAT, file_name, record
    from churn.scoring import plain_rows

    rng = np.random.default_rng(0)
    probability = rng.beta(1.2, 12, len(frame))
    values = plain_rows(frame[names])
    ids, as_of = frame[entity].tolist(), frame["as_of"].astype(str).tolist()
    per_hour = len(frame) // 4 + 1
    for part in range(4):
        hour = start + timedelta(hours=part)
        with open(directory / file_name(hour.strftime(HOUR_FORMAT), 1), "wb") as handle:
            lines = []
            for k in range(part * per_hour, min(len(frame), (part + 1) * per_hour)):
                ts = hour + timedelta(microseconds=k % per_hour * 3000)
                lines.append(
                    orjson.dumps(
                        record(
                            entity,
                            ids[k],
                            request_id=f"{k:032x}",
                            row=0,
                            ts=ts.isoformat() + "+00:00",
                            as_of=as_of[k],
                            prediction=int(probability[k] > 0.2),
                            probability=float(probability[k]),
                            model_version="1",
                            latency_ms=1.5,
                            features=dict(zip(names, values[k])),
                        ),
                        option=orjson.OPT_APPEND_NEWLINE,
                    )
                )
            handle.write(b"".join(lines))
            handle.write(
                b'{"truncated": \n'
            )  # one broken line per file, as a crash mid-write leaves


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference", type=int, default=100_000)
    parser.add_argument("--skip-evidently-full", action="store_true")
    args = parser.parse_args()

    import numpy as np

    from adapters import evidently_reports, feature_engine, labels, log_drift, prediction_log
    from adapters.feature_sets import TRAINING_SET, latest, read_table
    from adapters.monitor_window import label_metrics
    from churn.contracts import Reference
    from churn.monitoring import dataset_drift
    from churn.params import AlertRules
    from churn.settings import Settings

    settings = Settings.from_env()
    feature_set = latest(settings.features_dir)
    manifest = feature_set.manifest
    names = [f.name for f in manifest.features]
    kinds = {f.name: "str" if f.dtype == "str" else "num" for f in manifest.features}
    training = read_table(feature_set.path / TRAINING_SET, manifest.entity)
    rng = np.random.default_rng(1)
    reference_frame = training.sample(n=args.reference, replace=True, random_state=1).reset_index(
        drop=True
    )
    reference_frame["probability"] = rng.beta(1.2, 12, len(reference_frame))
    reference = Reference(
        "1",
        0.83,
        manifest.entity,
        manifest.entity_dtype,
        kinds,
        reference_frame[[*names, manifest.label, "probability"]],
    )
    traffic = training.sample(n=args.rows, replace=True, random_state=2).reset_index(drop=True)
    for name in [n for n in names if kinds[n] == "num"][::3]:
        traffic[name] = traffic[name] * 1.3 + 1  # a shift in a third of the numeric features
    start = datetime(2030, 1, 1)
    print(
        f"{args.rows:,} logged predictions x {len(names)} features vs a {args.reference:,}-row reference"
    )

    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp)
        t = time.perf_counter()
        _write_log(log_dir, traffic, manifest.entity, names, start)
        print(
            f"(writing the log: {time.perf_counter() - t:.1f} s, "
            f"{sum(f.stat().st_size for f in log_dir.iterdir()) / 2**20:,.0f} MiB)"
        )
        del traffic
        stages = {}
        total = time.perf_counter()
        con = feature_engine.connect(settings)
        con.execute("set TimeZone = 'UTC'")
        t = time.perf_counter()
        read = prediction_log.load_window(
            con, log_dir, manifest.entity, start, start + timedelta(hours=4)
        )
        stages["read + parse log"] = time.perf_counter() - t
        t = time.perf_counter()
        metrics = prediction_log.window_metrics(con)
        stages["window metrics"] = time.perf_counter() - t
        t = time.perf_counter()
        drift = log_drift.measure(con, reference, 10)
        psi, prediction_psi = drift.psi, drift.prediction_psi
        stages[f"PSI, {len(names)} features + prediction"] = time.perf_counter() - t
        t = time.perf_counter()
        ((labelled, note),) = labels.matured(settings, con, "preds")
        label = label_metrics(labelled, note)
        stages["matured labels + metrics"] = time.perf_counter() - t
        t = time.perf_counter()
        sample = prediction_log.sample(con, reference, 5000)
        rules = AlertRules()
        share, judged = dataset_drift(drift, rules)
        verdict = evidently_reports.DriftVerdict(
            share, {c.rule.removeprefix("psi:"): c for c in judged}, True
        )
        report = evidently_reports.drift_report(
            reference, reference.frame.sample(n=5000, random_state=7), sample, verdict, rules
        )
        report.save_html(str(log_dir / "report.html"))
        stages["Evidently report, 5,000-row samples"] = time.perf_counter() - t
        con.close()
        total = time.perf_counter() - total
    for stage, seconds in stages.items():
        print(f"  {stage:<38}{seconds:>8.1f} s")
    print(
        f"monitor (as the flow computes it): {total:.1f} s for {metrics.count:,} rows "
        f"({read.malformed} malformed lines skipped), peak RSS {_rss_gib():.2f} GiB (target < 60 s)"
    )
    auc_roc = label.get("auc_roc")
    drifted = sorted(((v, k) for k, v in psi.items() if v > 0.25), reverse=True)
    print(
        f"  drifted features (PSI > 0.25): {len(drifted)} of {len(psi)}; prediction PSI {prediction_psi:.3f}; "
        f"{label.labelled:,} matured labels, auc_roc {auc_roc if auc_roc is None else round(auc_roc, 3)}"
    )

    if not args.skip_evidently_full:
        traffic = training.sample(n=args.rows, replace=True, random_state=2).reset_index(drop=True)
        for name in [n for n in names if kinds[n] == "num"][::3]:
            traffic[name] = traffic[name] * 1.3 + 1
        traffic["probability"] = np.random.default_rng(0).beta(1.2, 12, len(traffic))
        t = time.perf_counter()
        _evidently_alone(reference, traffic).save_html(
            str(Path(tempfile.gettempdir()) / "evidently-full.html")
        )
        print(
            f"Evidently alone on the full frames: {time.perf_counter() - t:.1f} s, peak RSS {_rss_gib():.2f} GiB"
        )
    return 0


def _evidently_alone(reference, current):
    """The naive baseline: Evidently computing its own PSI over the full frames."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    names = list(reference.features)
    numeric = [n for n, k in reference.features.items() if k != "str"] + ["probability"]
    categorical = [n for n, k in reference.features.items() if k == "str"]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    columns = [*names, "probability"]
    return Report([DataDriftPreset(method="psi", threshold=0.25)]).run(
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
        reference_data=Dataset.from_pandas(reference.frame[columns], data_definition=definition),
    )


if __name__ == "__main__":
    raise SystemExit(main())
