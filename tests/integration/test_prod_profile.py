"""The production profile for real: `churn stack up --profile prod` (PostgreSQL, moto's S3 server,
MLflow with basic auth, Prefect) on free loopback ports, the demo path (features, train, package)
through it with the raw data and feature sets on the S3 stand-in, and two service replicas
writing the prediction log there, read back by one monitor window that counts every answered
prediction exactly once. Then `stack down`, with no process left behind.

Marked ``prod``: skipped by `make test` (the embedded default), run by `make test-prod` (.ci/run
does, installing Debian's postgresql first when it is missing and it can).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from churn.settings import Settings
from ops import prod_stack, stack
from tests.helpers import ROOT, run_churn

pytestmark = pytest.mark.prod

REPLICAS = {
    # replica a flushes by count and by age; replica b only at shutdown (its buffer outlives the
    # requests): both paths must deliver every answered record, once
    "a": {"CHURN_LOG_FLUSH_RECORDS": "7", "CHURN_LOG_FLUSH_SECONDS": "1"},
    "b": {"CHURN_LOG_FLUSH_RECORDS": "100000", "CHURN_LOG_FLUSH_SECONDS": "3600"},
}


def stack_pids(directory: Path) -> set[int]:
    """Every process the stack runs now: the recorded ones and everything below them."""
    pids: set[int] = set()
    for pid_file in directory.glob("*.pid"):
        pid = int(pid_file.read_text())
        if stack.alive(pid):
            pids |= {pid, *stack.descendants(pid)}
    for tree in directory.glob("*.tree"):
        pids |= {int(line.split()[0]) for line in tree.read_text().splitlines() if line.strip()}
    return {p for p in pids if stack.alive(p)}


def wait_gone(pids: set[int], timeout: float = 30) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(stack.alive(p) for p in pids):
        time.sleep(0.5)
    return {p for p in pids if stack.alive(p)}


@pytest.fixture(scope="module")
def prod(small_world):
    try:
        prod_stack.pg_bindir(Settings.from_env())
    except stack.StackError as exc:
        pytest.skip(f"the prod profile needs PostgreSQL here: {exc}")
    # PostgreSQL runs as the `postgres` OS user when we are root: its home must be reachable by it
    # (pytest's own temp directories are private to root)
    base = Path(tempfile.mkdtemp(prefix="churn-prod-"))
    base.chmod(0o711)
    home = base / "home"
    settings = Settings.from_env({"CHURN_HOME": str(home)}, cwd=ROOT)
    started = time.monotonic()
    env = prod_stack.up(settings, ROOT, timeout=300)
    print(f"prod stack up in {time.monotonic() - started:.0f}s")
    everything = stack_pids(settings.stack_dir)
    patch = pytest.MonkeyPatch()
    try:
        for key in (
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
        ):
            patch.setenv(key, env[key])  # this process reads the store too (boto3, s3fs)
        # raw data, feature sets and the prediction log all live on the object store (CHURN_STORAGE)
        from adapters import object_store

        object_store.upload_dir(small_world, f"s3://{prod_stack.DATA_BUCKET}/raw")
        client_env = {
            **{k: v for k, v in os.environ.items() if k != "CHURN_RAW_DIR"},
            **env,
            "CHURN_FEATURE_REPO": str(ROOT / "feature_sql"),
            "CHURN_DUCKDB_MEMORY_LIMIT": "1GB",
            "BENTOML_HOME": str(settings.bentoml_home),
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
        yield {"settings": settings, "env": client_env, "pids": everything}
    finally:
        patch.undo()
        everything |= stack_pids(settings.stack_dir)
        stopped = stack.down(settings)
        left = wait_gone(everything)
        assert not left, f"processes left after stack down: {left}"
        assert set(stopped) == set(stack.STOP_ORDER)
        shutil.rmtree(base, ignore_errors=True)


def churn(env: dict[str, str], *args: str, timeout: float = 900) -> str:
    done = run_churn(*args, env=env, timeout=timeout)
    assert done.returncode == 0, (
        f"churn {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )
    return done.stdout


def test_the_demo_path_runs_on_postgresql_and_the_object_store(prod):
    env, settings = prod["env"], prod["settings"]
    started = time.monotonic()
    out = churn(env, "demo")
    print(f"demo (features, train, package) in {time.monotonic() - started:.0f}s")
    assert "== done" in out

    # MLflow's runs and registry are in PostgreSQL, its artifacts in the S3 stand-in's bucket
    import boto3
    import psycopg

    values = prod_stack.load_secrets(settings.stack_dir)
    ports = prod_stack.recorded_ports(settings.stack_dir)
    with psycopg.connect(
        prod_stack.pg_url(ports.postgres, values["postgres_password"], "mlflow")
    ) as con:
        runs = con.execute("select count(*) from runs").fetchone()[0]
        versions = con.execute(
            "select count(*) from model_versions where name = 'churn-classifier'"
        ).fetchone()[0]
    assert runs >= 1 and versions == 1
    keys = [
        o["Key"]
        for page in boto3.client("s3")
        .get_paginator("list_objects_v2")
        .paginate(Bucket=prod_stack.MLFLOW_BUCKET)
        for o in page.get("Contents", [])
    ]
    assert any(k.endswith("MLmodel") for k in keys) and any(
        k.endswith("reference.parquet") for k in keys
    )
    # the feature set was published to the store (the pointer last) and read back through the cache
    from adapters import feature_sets, object_store

    store = f"s3://{prod_stack.DATA_BUCKET}/features"
    version = json.loads(object_store.read_bytes(f"{store}/latest.json"))["version"]
    published = object_store.glob(f"{store}/runs/{version}/*")
    assert {p.rsplit("/", 1)[1] for p in published} >= {
        feature_sets.MANIFEST,
        feature_sets.TRAINING_SET,
        feature_sets.ONLINE_SNAPSHOT,
    }
    assert (settings.feature_set_cache / "runs" / version / feature_sets.MANIFEST).is_file()
    # the package flow exported the Bento there, for replicas and image builds elsewhere
    assert len(object_store.glob(f"s3://{prod_stack.DATA_BUCKET}/bentos/*.bento")) == 1

    # the tracking server refuses a client without credentials
    mlflow_url = env["CHURN_TRACKING_URI"]
    assert (
        httpx.get(f"{mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1").status_code
        == 401
    )

    # Prefect's flow runs are on its PostgreSQL-backed server
    flow_runs = httpx.post(
        f"{env['PREFECT_API_URL']}/flow_runs/filter", json={"limit": 50}, timeout=30
    ).json()
    names = {}
    flows = {
        f["id"]: f["name"]
        for f in httpx.post(f"{env['PREFECT_API_URL']}/flows/filter", json={}).json()
    }
    for run in flow_runs:
        names.setdefault(flows[run["flow_id"]], set()).add(run["state_type"])
    assert {"features", "train", "package"} <= set(names)
    assert all(states == {"COMPLETED"} for states in names.values()), names
    with psycopg.connect(
        prod_stack.pg_url(ports.postgres, values["postgres_password"], "prefect")
    ) as con:
        assert con.execute("select count(*) from flow_run").fetchone()[0] == len(flow_runs)


def test_two_replicas_log_to_the_store_and_one_window_counts_every_answer_once(prod):
    """Each replica starts as on a machine of its own: an empty Bento store, the package flow's
    Bento imported from the object store (`bentoml import s3://...`), then served."""
    env, settings = prod["env"], prod["settings"]
    from adapters import object_store

    exported = object_store.glob(f"s3://{prod_stack.DATA_BUCKET}/bentos/*.bento")
    if not exported:
        pytest.skip("the demo path did not export a Bento")
    bento = exported[-1].rsplit("/", 1)[1].removesuffix(".bento")
    tag = ":".join(bento.rsplit("-", 1))
    directory = settings.stack_dir / "replicas"
    ports = {name: stack.free_port() for name in REPLICAS}
    for name, extra in REPLICAS.items():
        home = {**env, "BENTOML_HOME": str(directory / f"bentoml-{name}")}
        imported = subprocess.run(
            [str(stack.BIN / "bentoml"), "import", exported[-1]],
            env=home,
            capture_output=True,
            text=True,
        )
        assert imported.returncode == 0, imported.stdout + imported.stderr
        stack.start_process(
            f"replica-{name}",
            [str(stack.BIN / "bentoml"), "serve", tag, "--host", "127.0.0.1", "--port",
             str(ports[name])],
            {
                **home,
                **extra,
                "CHURN_SERVICE_WORKERS": "1",
                "CHURN_RELOAD_SECONDS": "0",
                "CHURN_ACCESS_LOG": "false",
            },
            directory,
            directory,
        )  # fmt: skip
    answered: list[tuple[str, int]] = []
    window_start = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1)
    try:
        for name, port in ports.items():
            stack.wait_healthy(
                f"http://127.0.0.1:{port}/readyz", 300, directory / f"replica-{name}.log"
            )
            stack.record_tree(f"replica-{name}", directory)
        import pandas as pd

        snapshot = pd.read_parquet(next(settings.bentoml_home.rglob("online_snapshot.parquet")))
        entity = "customer_id"
        ids = snapshot[entity].astype(int).tolist()
        with httpx.Client(timeout=60) as client:
            for round_ in range(6):
                for port in ports.values():
                    batch = ids[round_ * 5 : round_ * 5 + 3 + round_ % 3]
                    response = client.post(
                        f"http://127.0.0.1:{port}/predict_by_id", json={"ids": batch}
                    )
                    assert response.status_code == 200, response.text
                    answered += [(a["request_id"], k) for k, a in enumerate(response.json())]
        time.sleep(1.5)  # replica a's age-based flush
    finally:
        for name in REPLICAS:  # a clean stop (SIGINT): each worker writes what it still buffers
            stack.stop_process(f"replica-{name}", directory)

    from adapters import prediction_log
    from adapters.feature_engine import connect

    with connect(settings) as con:
        con.execute("set TimeZone = 'UTC'")
        started = time.monotonic()
        read = prediction_log.load_window(
            con,
            f"s3://{prod_stack.DATA_BUCKET}/predictions",
            entity,
            window_start,
            datetime.now(UTC).replace(tzinfo=None) + timedelta(minutes=1),
        )
        logged = con.execute("select request_id, count(*) from preds group by 1").fetchall()
        files = prediction_log.log_files(
            f"s3://{prod_stack.DATA_BUCKET}/predictions",
            window_start,
            datetime.now(UTC).replace(tzinfo=None),
        )
        print(
            f"window read over the store: {read.files} objects in {time.monotonic() - started:.2f}s"
        )
    assert read.malformed == 0 and read.files >= 3
    writers = {name.rsplit("/", 1)[1].rsplit("-", 1)[0] for name in files}
    assert len(writers) == len(REPLICAS)  # one worker each: two process starts wrote objects
    per_request: dict[str, int] = {}
    for request_id, _ in answered:
        per_request[request_id] = per_request.get(request_id, 0) + 1
    assert dict(logged) == per_request  # every answered row once: no loss, no double count
    assert sum(per_request.values()) == len(answered) > 30


WRITER = """
import sys, time
from bentos.prediction_log import ObjectStoreLog
from churn.predictions import record

log = ObjectStoreLog(sys.argv[1], flush_records=int(sys.argv[2]), flush_seconds=float(sys.argv[3]))
for k in range(int(sys.argv[4])):
    log.write([record("customer_id", k, request_id=f"r{k}", row=0, ts="2030-01-01T00:00:00+00:00",
        as_of="2030-01-01T00:00:00", prediction=0, probability=0.1, model_version="1",
        latency_ms=1.0, features={"x": k})])
print("answered", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize(
    ("flush_records", "flush_seconds", "answered", "stored"),
    [(10, 3600, 23, 20), (1000, 0.5, 7, 7)],
    ids=["by-count: the 3 buffered are lost", "by-age: nothing older than 0.5 s is"],
)
def test_a_killed_writer_loses_at_most_what_it_buffered(
    prod, flush_records, flush_seconds, answered, stored
):
    """SIGKILL (no shutdown hook runs): what reached the store is every record but the last
    unflushed ones (at most CHURN_LOG_FLUSH_RECORDS, none older than CHURN_LOG_FLUSH_SECONDS),
    each once."""
    import signal

    from adapters import object_store

    url = f"s3://{prod_stack.DATA_BUCKET}/killed-{flush_records}"
    proc = subprocess.Popen(
        [
            str(stack.BIN / "python"),
            "-c",
            WRITER,
            url,
            str(flush_records),
            str(flush_seconds),
            str(answered),
        ],
        env=prod["env"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "answered"
        time.sleep(3.0)  # the writer thread's PUTs of what was due (full objects, or 0.5 s old)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    ids = [
        json.loads(line)["request_id"]
        for key in object_store.glob(f"{url}/*.jsonl")
        for line in object_store.read_bytes(key).splitlines()
    ]
    assert sorted(ids, key=lambda r: int(r[1:])) == [f"r{k}" for k in range(stored)]


def test_the_simulate_loop_runs_on_the_prod_stack(prod):
    """The level-3 loop (drifted traffic, alerts, labels, retraining, promotion, the new model
    served) with MLflow and Prefect on PostgreSQL, and the feature sets and the service's prediction
    log (buffered, flushed every 2 s by default) on the S3 stand-in. Only the raw data is a local
    directory: the loop delivers the labels by renaming directories. Its own home, model name and
    store prefix keep it apart from the demo path's model."""
    base = Path(tempfile.mkdtemp(prefix="churn-prod-loop-"))
    home = base / "home"
    env = {
        **prod["env"],
        "CHURN_HOME": str(home),
        "CHURN_RAW_DIR": str(home / "raw"),
        "CHURN_STORAGE": f"s3://{prod_stack.DATA_BUCKET}/loop",
        "BENTOML_HOME": str(home / "bentoml"),
        "CHURN_MODEL_NAME": "churn-loop",
    }
    try:
        churn(env, "generate", "--customers", "8000", "--months", "14", "--drift-months", "2",
              "--seed", "5")  # fmt: skip
        churn(env, "demo")
        port, directory = stack.free_port(), home / "serve"
        serve_env = {**env, "CHURN_API_TOKEN": "loop-token", "CHURN_RELOAD_SECONDS": "1"}
        stack.start_process("bentoml", stack.serve_command(port), serve_env, directory, ROOT)
        try:
            stack.wait_healthy(f"http://127.0.0.1:{port}/readyz", 300, directory / "bentoml.log")
            stack.record_tree("bentoml", directory)
            started = time.monotonic()
            out = churn(
                serve_env, "simulate", "--url", f"http://127.0.0.1:{port}", "--token",
                "loop-token", "--min-new-labels", "100", timeout=1500,
            )  # fmt: skip
            print(f"simulate loop in {time.monotonic() - started:.0f}s")
        finally:
            stack.stop_process("bentoml", directory)
        assert "alert fired: drifted_share" in out and "retraining FIRED" in out, out[-3000:]
        assert "the service now answers with model version 2" in out, out[-3000:]
        import duckdb

        with duckdb.connect(str(home / "monitoring" / "monitoring.duckdb"), read_only=True) as con:
            counts = [
                r[0]
                for r in con.execute("select count from windows order by window_start").fetchall()
            ]
        # every burst's records reached the store before its window was judged, and only once
        sent = [int(n.replace(",", "")) for n in re.findall(r"== traffic: ([\d,]+)", out)]
        assert counts == sent and len(sent) == 5, (counts, sent)
        from adapters import object_store

        assert object_store.glob(f"s3://{prod_stack.DATA_BUCKET}/loop/predictions/**/*.jsonl")
    finally:
        shutil.rmtree(base, ignore_errors=True)
