"""The monitor's DuckDB PSI over a prediction log equals the gates' PSI computed in pandas on the same values."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest

from adapters import log_drift, prediction_log
from churn import drift
from churn.contracts import Reference
from churn.predictions import file_name


def test_duckdb_psi_matches_the_pandas_psi_row_for_row(tmp_path):
    rng = np.random.default_rng(3)
    reference = pd.DataFrame(
        {
            "x": rng.normal(size=2000),
            "n": rng.integers(0, 9, 2000).astype(float),
            "plan": rng.choice(["basic", "pro", None], 2000),
            "flag": (rng.random(2000) < 0.3).astype(float),  # a bool feature: the model sees 0/1
            "probability": rng.random(2000),
        }
    )
    reference.loc[rng.random(2000) < 0.05, "x"] = np.nan
    ref = Reference(
        "1",
        0.8,
        "account",
        "int64",
        {"x": "num", "n": "num", "plan": "str", "flag": "bool"},
        reference,
    )
    current = pd.DataFrame(
        {
            "x": rng.normal(0.4, 1.2, 600),
            "n": rng.integers(0, 12, 600).astype(float),
            "plan": rng.choice(["basic", "pro", "enterprise", None], 600),
            "flag": rng.choice([True, False, None], 600, p=[0.6, 0.35, 0.05]),
            "probability": rng.random(600) ** 2,
        }
    )
    current.loc[rng.random(600) < 0.1, "x"] = np.nan
    start = datetime(2030, 1, 1)
    lines = []
    for k, row in current.iterrows():
        features = {c: (None if pd.isna(row[c]) else row[c]) for c in ("x", "n", "plan", "flag")}
        if k < 50:  # an older model's rows: no 'n'
            features.pop("n")
        lines.append(
            json.dumps(
                {
                    "ts": (start + timedelta(seconds=k)).isoformat() + "+00:00",
                    "account": k,
                    "probability": row["probability"],
                    "prediction": 0,
                    "model_version": "1",
                    "latency_ms": 1.0,
                    "features": features,
                }
            )
        )
    (tmp_path / file_name("20300101T00", 1)).write_text("\n".join(lines) + "\n")
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    assert (
        prediction_log.load_window(
            con, tmp_path, "account", start, start + timedelta(hours=1)
        ).malformed
        == 0
    )
    measured = log_drift.measure(con, ref, bins=10)
    psi, carried, prediction_psi = measured.psi, measured.carried, measured.prediction_psi
    assert carried == {"x": 600, "n": 550, "plan": 600, "flag": 600}
    as_model_saw = current["flag"].map({True: 1.0, False: 0.0})  # JSON true/false, read back as 0/1
    assert psi["flag"] == pytest.approx(
        drift.population_stability_index(reference["flag"], as_model_saw)
    )
    assert psi["flag"] > 0.25  # 30% -> 60% true is drift
    sampled = prediction_log.sample(con, ref, 100)
    assert set(sampled["flag"].dropna()) <= {0.0, 1.0} and sampled["flag"].dtype == "float64"
    assert psi["x"] == pytest.approx(drift.population_stability_index(reference["x"], current["x"]))
    assert psi["n"] == pytest.approx(
        drift.population_stability_index(reference["n"], current["n"].iloc[50:])
    )
    assert psi["plan"] == pytest.approx(
        drift.population_stability_index(reference["plan"], current["plan"])
    )
    assert prediction_psi == pytest.approx(
        drift.population_stability_index(reference["probability"], current["probability"])
    )
    assert psi["x"] > 0.05 and psi["plan"] > 0.01
