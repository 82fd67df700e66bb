"""The command line as a new user runs it: a fresh CHURN_HOME nobody created, no Prefect server;
every step run too early says what to run in one line; the local stack up, status and down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from ops import stack
from tests.helpers import ROOT


def test_features_build_on_a_home_that_does_not_exist_yet(small_world, tmp_path):
    home = tmp_path / "not" / "yet" / "home"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")
    }  # no server: Prefect's own
    env |= {
        "CHURN_HOME": str(home),
        "CHURN_RAW_DIR": str(small_world),
        "CHURN_DUCKDB_MEMORY_LIMIT": "1GB",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    built = subprocess.run(
        [str(stack.BIN / "churn"), "features", "build"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    printed = json.loads(
        built.stdout[built.stdout.rindex('{\n  "version"') :]
    )  # the command's last output
    assert (home / "features" / "runs" / printed["version"]).is_dir()
    assert (home / "prefect").is_dir()  # Prefect's state lives in the home, created for it


def fresh_env(home) -> dict[str, str]:
    """A user's shell: a CHURN_HOME nothing was run in, no Prefect server configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MAKE", "MFLAGS"))}
    return env | {"CHURN_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def make(target: str, env: dict[str, str], *variables: str, timeout: float = 600):
    started = time.monotonic()
    done = subprocess.run(
        ["make", "-s", "--no-print-directory", target, *variables],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done, time.monotonic() - started


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The command's own error: exactly one line on stderr (make's "*** Error" line aside)."""
    lines = [line for line in done.stderr.splitlines() if not line.startswith("make: ***")]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("target", "fix"),
    [
        ("serve", "run `make package` once a model is promoted"),
        ("package", "run `make demo` (or `make features` then `make train`) first"),
        ("monitor", "run `make demo` (or `make features` then `make train`) first"),
        ("simulate", "start it with `make serve`"),
        ("run-train", "`make up` first, then `make deploy`"),
        ("run-features", "`make up` first, then `make deploy`"),
        ("deploy", "run `make up` first"),
    ],
)
def test_a_step_run_too_early_says_what_to_run_in_one_line(target, fix, tmp_path):
    env = fresh_env(tmp_path / "home")
    done, seconds = make(target, env, f"SERVE_PORT={stack.free_port()}")
    assert done.returncode == 2 and fix in one_line(done), done.stdout + done.stderr
    assert seconds < 30  # before Prefect or MLflow start


def test_make_up_refuses_a_port_another_server_holds_in_one_line(tmp_path):
    port, mlflow_port = stack.free_port(), stack.free_port()
    other = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while stack.port_free(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        env = fresh_env(tmp_path / "home")
        done, seconds = make("up", env, f"PORT={port}", f"MLFLOW_PORT={mlflow_port}")
        line = one_line(done)
        assert done.returncode == 2 and seconds < 30
        assert line.startswith(f"error: port {port} on 127.0.0.1 is taken by pid {other.pid} (")
        assert line.endswith("make up PORT=<port>") and "http.server" in line
        assert not list((tmp_path / "home").glob("stack/*.pid"))  # nothing was started
    finally:
        other.terminate()
        other.wait(30)


def test_a_health_answer_from_another_process_does_not_count(tmp_path):
    """`make up` trusts an answer only from the process it started: here "ours" is a sleeping
    process and another server answers on the port, as when a second stack shares a port."""
    port = stack.free_port()
    other = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ours = subprocess.Popen(["sleep", "60"])
    try:
        with pytest.raises(stack.StackError, match="answered, but not from the process started"):
            stack.wait_healthy(f"http://127.0.0.1:{port}/", 30, pid=ours.pid, port=port)
        assert stack.owns_port(other.pid, port) and not stack.owns_port(ours.pid, port)
        ours.kill()
        ours.wait(10)
        with pytest.raises(stack.StackError, match="exited before answering"):
            stack.wait_healthy(f"http://127.0.0.1:{stack.free_port()}/", 30, pid=ours.pid)
    finally:
        for proc in (ours, other):
            proc.kill()
            proc.wait(30)


def test_make_up_status_mlflow_ui_and_down(tmp_path):
    """The local stack as a user drives it: progress while waiting, status of every part, the
    MLflow UI already served, the wrong-order steps while it runs, and a clean stop."""
    port, mlflow_port = stack.free_port(), stack.free_port()
    env = fresh_env(tmp_path / "home")
    ports = (f"PORT={port}", f"MLFLOW_PORT={mlflow_port}")
    try:
        up, seconds = make("up", env, *ports, timeout=900)
        assert up.returncode == 0, up.stdout + up.stderr
        assert (
            "waiting for the Prefect server" in up.stdout and "MLflow server ready in" in up.stdout
        )
        assert "process worker ready in" in up.stdout and "the stack is up in" in up.stdout

        status, _ = make("status", env)
        assert status.returncode == 0, status.stdout + status.stderr
        rows = {line[:15].strip(): line for line in status.stdout.splitlines()}
        assert set(rows) == {"Prefect server", "process worker", "MLflow server"}
        assert all(" healthy " in row for row in rows.values()), status.stdout
        assert f"port {port}" in rows["Prefect server"]
        assert f"port {mlflow_port}" in rows["MLflow server"] and "online" in rows["process worker"]

        ui, seconds = make("mlflow-ui", env, f"MLFLOW_PORT={mlflow_port}")
        assert ui.returncode == 0 and seconds < 30
        assert ui.stdout.strip() == (
            f"the stack's MLflow server already serves this store on "
            f"http://127.0.0.1:{mlflow_port} (make up): open it there"
        )
        taken, _ = make("mlflow-ui", env, f"MLFLOW_PORT={port}")  # the Prefect server's port
        assert taken.returncode == 2 and "make mlflow-ui MLFLOW_PORT=<port>" in one_line(taken)

        again, _ = make("up", env, *ports)
        assert again.returncode == 2 and "`make down` first" in one_line(again)
        train, _ = make("run-train", env)
        assert train.returncode == 2
        assert "deployment 'train/train-weekly' is not registered" in one_line(train)
        assert "`make deploy` first" in one_line(train)
    finally:
        down, _ = make("down", env)
    assert down.returncode == 0 and down.stdout.strip().endswith(
        "stopped: prefect-worker, prefect-server, mlflow-server"
    ), down.stdout + down.stderr
    assert stack.port_free(port) and stack.port_free(mlflow_port)
    status = subprocess.run(
        [str(stack.BIN / "churn"), "stack", "status"], env=env, capture_output=True, text=True
    )
    assert status.returncode == 1 and "the stack is not running" in status.stdout


def test_package_and_monitor_before_any_champion_say_what_to_run(tmp_path):
    """A home with a tracking store but nothing promoted (e.g. every model was rejected so far)."""
    from adapters import mlflow_store
    from churn.settings import Settings

    env = fresh_env(tmp_path / "home")
    mlflow_store.connect(Settings.from_env(env))  # an empty store, as the first train run makes it
    package, _ = make("package", env)
    assert package.returncode == 2
    assert "no feature set is published" in one_line(package) and "`make features`" in one_line(
        package
    )
    monitor, _ = make("monitor", env)
    assert monitor.returncode == 2 and one_line(monitor).startswith(
        "error: nothing to monitor: churn-classifier has no @champion"
    )
