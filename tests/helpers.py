"""Small helpers shared by the SQL and integration tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from churn.contracts import FeatureSchema, TrainResult
from churn.params import GateParams, TrainParams
from churn.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def run_churn(
    *args: str, env: dict[str, str], timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process from the checkout, as a user runs it (BentoML binds its store to
    one home per process)."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "churn"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def settings_for(tmp: Path, raw_dir: Path, repo: Path | None = None) -> Settings:
    return Settings.from_env(
        {
            "CHURN_HOME": str(tmp / "home"),
            "CHURN_RAW_DIR": str(raw_dir),
            "CHURN_FEATURE_REPO": str(repo or ROOT / "feature_sql"),
            "CHURN_DUCKDB_THREADS": "1",
            "CHURN_DUCKDB_MEMORY_LIMIT": "1GB",
        }
    )


def write_tables(raw_dir: Path, tables: dict[str, pd.DataFrame]) -> Path:
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_parquet(raw_dir / f"{name}.parquet", index=False)
    return raw_dir


def copy_repo(tmp: Path, source: Path | None = None) -> Path:
    target = tmp / "feature_repo"
    shutil.copytree(source or ROOT / "feature_sql", target)
    return target


def build(settings: Settings, as_of_dates: list[datetime], with_label: bool = True) -> pd.DataFrame:
    """Evaluate the repo's views against the spine at the given as-of dates, as the flow does."""
    from adapters import feature_engine as engine

    repo = engine.load_feature_repo(settings.feature_repo)
    with engine.connect(settings) as con:
        engine.register_sources(con, repo, engine.resolve_sources(repo, settings.raw_dir))
        engine.build_spine(con, repo, as_of_dates, with_label=with_label)
        frame = engine.evaluate_views(con, repo).df()
    return frame.sort_values([repo.config.entity, "as_of"], ignore_index=True)


# latency depends on how busy the box is: tests keep that gate in warn mode (its logic is unit-tested);
# the small test world gives a noisier threshold, so recall is held to a lower bar than the default
SMALL_WORLD_PARAMS = TrainParams(
    estimator={"kind": "hist_gradient_boosting", "max_iter": 60},
    gates=GateParams(latency={"mode": "warn"}, performance={"min_recall": 0.1}),
)


# a fast estimator for flow tests that only need some trained model
FAST = TrainParams(estimator={"kind": "hist_gradient_boosting", "max_iter": 60})


def train_champion() -> TrainResult:
    """Train with SMALL_WORLD_PARAMS on the current CHURN_* settings; the model must become @champion."""
    from flows.train import train

    trained = train(SMALL_WORLD_PARAMS)
    assert trained.promoted, trained.report
    return trained


TOY_SCHEMA = FeatureSchema(numeric=["x"], categorical=["plan"])


def toy_frame(dates: int, rows_per_date: int = 40, seed: int = 0) -> pd.DataFrame:
    """A tiny training frame: ``dates`` monthly as-of dates, a numeric and a categorical feature, random labels."""
    rng = np.random.default_rng(seed)
    n = dates * rows_per_date
    return pd.DataFrame(
        {
            "customer_id": np.tile(np.arange(rows_per_date), dates),
            "as_of": np.repeat(
                pd.date_range("2025-01-01", periods=dates, freq="30D"), rows_per_date
            ),
            "x": rng.normal(size=n),
            "plan": rng.choice(["a", "b"], n),
            "label": rng.integers(0, 2, n),
        }
    )


def prefect_events(name: str, since: datetime, expect: int = 1, timeout: float = 60) -> list[dict]:
    """The events called ``name`` the Prefect server received since ``since`` (waits for ``expect``:
    events are sent in the background)."""
    import time

    from prefect.client.orchestration import get_client

    deadline, found = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            response = client._client.post(
                "/events/filter",
                json={
                    "filter": {
                        "event": {"name": [name]},
                        "occurred": {"since": since.isoformat()},
                    },
                    "limit": 50,
                },
            )
        response.raise_for_status()
        found = response.json()["events"]
        if len(found) >= expect:
            break
        time.sleep(1)
    return found


def run_tags(state) -> list[str]:
    """The tags of the flow run that ended in ``state``."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return list(client.read_flow_run(state.state_details.flow_run_id).tags)


def assert_same_table(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Row for row, with the same columns, dtypes, index and order; every value exact except float
    aggregates, which may differ in the last bits: DuckDB adds floats in an order its plan decides
    (the single build itself differs so between one and two DuckDB threads)."""
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12, atol=1e-12)
    exact = [c for c in expected.columns if expected[c].dtype.kind != "f"]
    pd.testing.assert_frame_equal(got[exact], expected[exact], check_exact=True)


def openapi_validator(document: dict, schema: dict):
    """A JSON Schema validator of an OpenAPI 3.0 ``schema`` inside ``document`` (its ``$ref``s
    resolved against the document's components; ``nullable: true`` read as "or null")."""
    import jsonschema

    def plain(node):
        if isinstance(node, list):
            return [plain(v) for v in node]
        if not isinstance(node, dict):
            return node
        nullable = node.get("nullable") is True and isinstance(node.get("type"), str)
        out = {k: plain(v) for k, v in node.items() if not (nullable and k == "nullable")}
        if nullable:
            out["type"] = [node["type"], "null"]
        return out

    return jsonschema.Draft202012Validator(
        plain({**schema, "components": document["components"]}),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
