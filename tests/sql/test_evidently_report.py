"""The Evidently report tells the monitor's verdict for the same window: windows of a prediction log
measured in DuckDB as the monitor measures them (every row), then rendered. Its dataset-drift
headline and per-column drifted flags and scores equal the monitor's, for a drifted window, a quiet
one and one exactly at the drifted-share limit (where Evidently's own rule, share >= limit, would
disagree); classification quality is scored at the model's decision threshold; report names carry
window bounds to the second, version and verdict, and never overwrite one another."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from adapters import evidently_reports, log_drift, prediction_log
from adapters.monitor_window import label_metrics
from churn import monitoring
from churn.contracts import Reference, WindowMeasurement
from churn.metrics import classification_metrics
from churn.params import MonitorParams
from churn.predictions import file_name

KINDS = {**{f"x{i}": "num" for i in range(6)}, "plan": "str", "flag": "bool"}
THRESHOLD = 0.35
START = datetime(2030, 1, 1)


def traffic(rng, n: int, shifted: tuple[str, ...] = (), shift: float = 1.0) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            **{f"x{i}": rng.normal(shift if f"x{i}" in shifted else 0.0, 1.0, n) for i in range(6)},
            "plan": rng.choice(
                ["basic", "pro", "team", None],
                n,
                p=(0.15, 0.3, 0.5, 0.05) if "plan" in shifted else (0.5, 0.3, 0.15, 0.05),
            ),
            "flag": (rng.random(n) < 0.3).astype(float),
            "probability": rng.beta(2, 5, n),
        }
    )
    frame.loc[rng.random(n) < 0.03, "x5"] = np.nan
    return frame


@pytest.fixture(scope="module")
def reference() -> Reference:
    rng = np.random.default_rng(11)
    frame = traffic(rng, 3000)
    frame["label"] = (rng.random(len(frame)) < frame["probability"]).astype(int)
    positive_rate = float((frame["probability"] >= THRESHOLD).mean())
    return Reference("7", 0.8, "account", "int64", KINDS, frame, positive_rate, THRESHOLD)


def measure(
    directory: Path,
    reference: Reference,
    current: pd.DataFrame,
    start: datetime,
    end: datetime,
    labelled: pd.DataFrame | None = None,
) -> WindowMeasurement:
    """Write ``current`` as the service logs it and measure the window as the monitor does."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for k, row in current.reset_index(drop=True).iterrows():
        features = {c: (None if pd.isna(row[c]) else row[c]) for c in KINDS}
        features["flag"] = bool(row["flag"])
        lines.append(
            json.dumps(
                {
                    "ts": (start + timedelta(seconds=k % 3000)).isoformat() + "+00:00",
                    "account": k,
                    "probability": row["probability"],
                    "prediction": int(row["probability"] >= THRESHOLD),
                    "model_version": reference.model_version,
                    "latency_ms": 1.0,
                    "features": features,
                }
            )
        )
    (directory / file_name(f"{start:%Y%m%dT%H}", 1)).write_text("\n".join(lines) + "\n")
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        read = prediction_log.load_window(con, directory, "account", start, end)
        metrics = prediction_log.window_metrics(con)
        drift = log_drift.measure(con, reference, 10)
        sample = prediction_log.sample(con, reference, 400)
    labels = label_metrics(labelled if labelled is not None else pd.DataFrame(), "test labels")
    return WindowMeasurement(
        read,
        metrics,
        drift,
        labels,
        window_labels=labels,
        sample=sample,
        labelled_sample=labelled,
    )


def evidently_says(page: str) -> tuple[bool, dict[str, bool], dict[str, float]]:
    """What the rendered Evidently dashboard shows: the headline, each column's flag and score."""
    (headline,) = re.findall(r"Dataset Drift is (detected|NOT detected)", page)
    columns = re.findall(
        r'"column_name": "([^"]+)", "column_type": "[^"]+", "stattest_name": "([^"]+)".*?'
        r'"data_drift": "(Detected|Not Detected)", "drift_score": ([-+0-9.e]+)',
        page,
        flags=re.DOTALL,
    )
    assert {stattest for _, stattest, _, _ in columns} == {evidently_reports.STATTEST_DISPLAY}
    flags = {name: flag == "Detected" for name, _, flag, _ in columns}
    scores = {name: float(score) for name, _, _, score in columns}
    return headline == "detected", flags, scores


def monitor_says(window: WindowMeasurement, params: MonitorParams) -> tuple[bool, dict[str, bool]]:
    """The monitor's own judgement of the window (what it alerts on)."""
    conditions = {c.rule: c for c in monitoring.conditions(window, 0.8, params.alerts)}
    flags = {r.removeprefix("psi:"): c.breached for r, c in conditions.items() if r[:4] == "psi:"}
    return conditions["drifted_share"].breached, flags


PARAMS = MonitorParams(report_sample_rows=300, alerts={"min_rows": 20})


@pytest.mark.parametrize(
    ("case", "shifted", "params"),
    [
        ("drifted", ("x0", "x1", "x2", "plan"), PARAMS),
        ("quiet", (), PARAMS),
        # 2 of 8 drifted against a limit of 0.25: the monitor calls it no dataset drift (a share
        # *above* the limit is); Evidently's own rule (share >= drift_share) would call it drift
        (
            "at-the-limit",
            ("x0", "x1"),
            MonitorParams(
                report_sample_rows=300, alerts={"min_rows": 20, "max_drifted_share": 0.25}
            ),
        ),
    ],
)
def test_the_report_headline_and_column_flags_are_the_monitors(
    tmp_path, reference, case, shifted, params
):
    rng = np.random.default_rng({"drifted": 1, "quiet": 2, "at-the-limit": 3}[case])
    end = START + timedelta(hours=1)
    window = measure(tmp_path / "log", reference, traffic(rng, 3000, shifted), START, end)
    dataset_drift, flags = monitor_says(window, params)
    assert dataset_drift is (case == "drifted")
    assert sorted(n for n, f in flags.items() if f) == sorted(shifted)

    out = evidently_reports.render(tmp_path / "reports", reference, window, params, START, end)
    page = out.read_text()
    headline, column_flags, scores = evidently_says(page)
    assert headline is dataset_drift
    assert column_flags == flags
    assert scores == pytest.approx(window.drift.psi, abs=1e-6)  # the monitor's PSI over every row
    verdict = "drifted" if dataset_drift else "stable"
    assert out.name == f"drift-20300101T000000-20300101T010000-v7-{verdict}.html"
    title = re.search(r"<title>([^<]+)</title>", page).group(1)
    label = "DATASET DRIFT" if dataset_drift else "no dataset drift"
    assert title == f"Drift 2030-01-01 00:00:00..2030-01-01 01:00:00 UTC, champion v7: {label}"
    # the static header reads without JavaScript and names every drifted feature
    header = page[page.index('<header id="churn-report-header">') : page.index("</header>")]
    assert all(f"<td>{name}</td>" in header for name in KINDS)
    assert f"Drifted: {', '.join(sorted(shifted)) or 'none'}." in header


def test_a_window_the_chi_squared_rule_flags_is_flagged_in_the_report_too(tmp_path, reference):
    """A moderate shift over many rows: PSI below max_psi, but the test on the same bins is
    significant and PSI is above min_psi; Evidently's own PSI rule would not flag it."""
    rng = np.random.default_rng(5)
    end = START + timedelta(hours=1)
    window = measure(
        tmp_path / "log", reference, traffic(rng, 6000, ("x3",), shift=0.45), START, end
    )
    condition = monitoring.feature_drift(
        "x3", window.drift.psi["x3"], window.drift.p_values["x3"], PARAMS.alerts
    )
    assert condition.breached and condition.why.startswith("test") and condition.value < 0.25
    out = evidently_reports.render(tmp_path / "reports", reference, window, PARAMS, START, end)
    _, flags, _ = evidently_says(out.read_text())
    assert flags["x3"] is True and sum(flags.values()) == 1


def test_classification_quality_is_scored_at_the_decision_threshold(tmp_path, reference):
    rng = np.random.default_rng(8)
    current = traffic(rng, 800)
    labelled = pd.DataFrame(
        {
            "label": (rng.random(len(current)) < current["probability"]).astype(int),
            "probability": current["probability"],
            "prediction": (current["probability"] >= THRESHOLD).astype(int),
        }
    )
    end = START + timedelta(hours=1)
    window = measure(tmp_path / "log", reference, current, START, end, labelled)
    snapshot = evidently_reports.quality_report(reference, reference.frame, labelled, THRESHOLD)
    recall = {
        m["metric_name"].split("(")[0]: m["value"]
        for m in snapshot.dict()["metrics"]
        if m["metric_name"].startswith(("Recall(", "Precision("))
    }
    ours = classification_metrics(
        labelled["label"].to_numpy(),
        labelled["probability"].to_numpy(),
        labelled["prediction"].to_numpy(),
    )
    assert recall["Recall"] == pytest.approx(ours["recall"])
    assert recall["Precision"] == pytest.approx(ours["precision"])
    at_half = classification_metrics(
        labelled["label"].to_numpy(),
        labelled["probability"].to_numpy(),
        (labelled["probability"] >= 0.5).astype(int).to_numpy(),
    )
    assert abs(ours["recall"] - at_half["recall"]) > 0.1  # the cut-off matters here

    out = evidently_reports.render(tmp_path / "reports", reference, window, PARAMS, START, end)
    quality = evidently_reports.quality_path(out)
    assert quality.name == "quality-20300101T000000-20300101T010000-v7-stable.html"
    page = quality.read_text()
    assert f"the model&#x27;s stored decision threshold {THRESHOLD:.4f}" in page
    assert re.search(r"<title>Classification quality 2030-01-01 00:00:00\.\.", page)


def test_report_names_are_unique_per_window_second_and_run(tmp_path, reference):
    rng = np.random.default_rng(2)
    end = START + timedelta(hours=1)
    window = measure(tmp_path / "log", reference, traffic(rng, 300), START, end)
    reports = tmp_path / "reports"
    names = [
        evidently_reports.render(reports, reference, window, PARAMS, START, end, "run-a"),
        evidently_reports.render(reports, reference, window, PARAMS, START, end, "run-b"),
        evidently_reports.render(reports, reference, window, PARAMS, START, end),
        evidently_reports.render(reports, reference, window, PARAMS, START, end),  # a rerun
        # the same minute, other seconds
        evidently_reports.render(
            reports, reference, window, PARAMS, START + timedelta(seconds=30), end
        ),
    ]
    assert len({p.name for p in names}) == len(names) and all(p.is_file() for p in names)
    assert [p.name for p in names[:4]] == [
        "drift-20300101T000000-20300101T010000-v7-stable-run-a.html",
        "drift-20300101T000000-20300101T010000-v7-stable-run-b.html",
        "drift-20300101T000000-20300101T010000-v7-stable.html",
        "drift-20300101T000000-20300101T010000-v7-stable-2.html",
    ]


def test_a_feature_no_sampled_row_has_is_shown_in_the_monitors_bins(tmp_path, reference):
    """Evidently refuses a column without values; the monitor counts missing values as a bin. The
    column is shown in the monitor's bins and still carries the monitor's figure and flag."""
    rng = np.random.default_rng(4)
    current = traffic(rng, 1000)
    current["x4"] = np.nan  # a feature the service stopped sending values for
    end = START + timedelta(hours=1)
    window = measure(tmp_path / "log", reference, current, START, end)
    _, flags = monitor_says(window, PARAMS)
    assert flags["x4"] is True
    out = evidently_reports.render(tmp_path / "reports", reference, window, PARAMS, START, end)
    _, column_flags, scores = evidently_says(out.read_text())
    assert column_flags == flags and scores["x4"] == pytest.approx(window.drift.psi["x4"], abs=1e-6)
