"""Shared fixtures and the test layers.

Prefect reads its settings when first imported, so ``pytest_configure`` points it at one real local
server (started on first use by the ``prefect_server`` fixture, on a free loopback port, with its
state in a temp dir) before any test module is collected. Every test gets a marker for its layer
(its directory): unit, sql, data, model, integration; tests that start servers are also ``slow``.
Each pytest-xdist worker runs this too: its own temp dir, Prefect server and CHURN_HOME.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("unit", "sql", "data", "model", "integration")
SESSION: dict[str, Path | int] = {}


def pytest_configure(config: pytest.Config) -> None:
    from ops.stack import free_port

    session_dir = Path(tempfile.mkdtemp(prefix="churn-tests-"))
    SESSION.update(dir=session_dir, port=free_port())
    os.environ.update(
        {
            "PREFECT_HOME": str(session_dir / "prefect"),
            "PREFECT_API_URL": f"http://127.0.0.1:{SESSION['port']}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            # nothing in the tests may write into the checkout's own .churn/
            "CHURN_HOME": str(session_dir / "home"),
        }
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--prod",
        action="store_true",
        help="also run the tests marked prod (the prod profile: PostgreSQL, S3 stand-in; make test-prod)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_prod = pytest.mark.skip(
        reason="the prod profile (PostgreSQL, S3 stand-in, MLflow with auth) runs with `make test-prod`"
    )
    for item in items:
        if "prod" in item.keywords and not config.getoption("--prod"):
            item.add_marker(skip_prod)
        layer = Path(str(item.fspath)).relative_to(ROOT / "tests").parts[0]
        if layer in LAYERS:
            item.add_marker(getattr(pytest.mark, layer))
        if (
            layer == "integration"
        ):  # every integration test runs against a real Prefect server at least
            item.add_marker(pytest.mark.slow)
        # `make test` runs on two processes (pytest-xdist, --dist loadgroup): a module's tests stay
        # in one process, so its module fixtures start once; the model layer shares one default model
        group = layer if layer == "model" else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def prefect_server():
    """A real Prefect server for the session; startup is slow here, so the timeout is generous."""
    from ops import stack

    directory = Path(SESSION["dir"]) / "stack"
    port = SESSION["port"]
    stack.start_process(
        "prefect-server",
        stack.prefect_server_command(port),
        {},
        directory,
        ROOT,
    )
    try:
        stack.wait_healthy(
            f"http://127.0.0.1:{port}/api/health", 240, directory / "prefect-server.log"
        )
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
    from adapters.raw_data import write_world
    from churn.synthetic import WorldParams

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
