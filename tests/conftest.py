"""Shared fixtures. Prefect is pointed at one real local server for the whole session (started on
first use, on a free loopback port, with its state in a temp dir), before anything imports Prefect."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tasks.stack import free_port

ROOT = Path(__file__).resolve().parents[1]
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="churn-tests-"))


PREFECT_PORT = free_port()
os.environ.update(
    {
        "PREFECT_HOME": str(_SESSION_DIR / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{PREFECT_PORT}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
)
# Nothing in the tests may write into the checkout's own .churn/.
os.environ["CHURN_HOME"] = str(_SESSION_DIR / "home")


@pytest.fixture(scope="session")
def prefect_server():
    """A real Prefect server for the session; startup is slow here, so the timeout is generous."""
    from churn.settings import Settings
    from tasks import stack

    directory = _SESSION_DIR / "stack"
    stack.start_process(
        "prefect-server",
        [str(stack.BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(PREFECT_PORT)],
        {}, directory, ROOT,
    )
    try:
        stack.wait_healthy(f"http://127.0.0.1:{PREFECT_PORT}/api/health", 240, directory / "prefect-server.log")
        yield os.environ["PREFECT_API_URL"]
    finally:
        # flush pending logs and events while the server still answers, or exit waits on retries
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=30)
        EventsWorker.drain_all(timeout=30)
        stack.stop_process("prefect-server", directory)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory) -> Path:
    """A small synthetic world (raw parquet), generated once per session."""
    from churn.synthetic import WorldParams
    from tasks.raw_data import write_world

    out = tmp_path_factory.mktemp("world") / "raw"
    write_world(WorldParams(customers=800, months=9, seed=11, drift_months=2), out)
    return out


@pytest.fixture
def churn_env(tmp_path, monkeypatch, small_world):
    """Settings for one test: its own CHURN_HOME, reading the small world and the repo's feature_sql."""
    from churn.settings import Settings

    monkeypatch.setenv("CHURN_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CHURN_RAW_DIR", str(small_world))
    monkeypatch.setenv("CHURN_FEATURE_REPO", str(ROOT / "feature_sql"))
    monkeypatch.setenv("CHURN_DUCKDB_MEMORY_LIMIT", "1GB")
    return Settings.from_env()
