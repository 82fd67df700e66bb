"""`make serve` as a user runs it: in the background (up / down), after a kill -9 of the server, in
the foreground until SIGTERM, and before any model exists: every way stops cleanly and restarts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import httpx
import pytest

from ops import stack
from tests.helpers import ROOT
from tests.helpers import run_churn as churn


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def packaged(prefect_server, small_world, tmp_path_factory):
    home = tmp_path_factory.mktemp("lifecycle") / "home"
    env = {
        **os.environ,
        "CHURN_HOME": str(home),
        "CHURN_RAW_DIR": str(small_world),
        "CHURN_DUCKDB_MEMORY_LIMIT": "1GB",
        "BENTOML_HOME": str(home / "bentoml"),
        "CHURN_RELOAD_SECONDS": "0",
    }
    params = json.dumps(
        {
            "estimator": {"kind": "hist_gradient_boosting", "max_iter": 40},
            "gates": {"latency": {"mode": "warn"}, "performance": {"mode": "warn"}},
        }
    )
    for step in (["train", "--params", params], ["package"]):
        done = churn(*step, env=env)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    yield env
    churn("serve", "down", env=env)


def test_serve_before_any_model_says_what_to_run(tmp_path):
    env = {**os.environ, "CHURN_HOME": str(tmp_path / "home")}
    done = churn("serve", "up", "--port", str(stack.free_port()), env=env, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: no packaged model 'churn-classifier' under {tmp_path / 'home' / 'bentoml'}: "
        "run `make package` once a model is promoted (`make demo` does both)"
    )


def test_up_down_and_a_clean_restart_after_kill_9(packaged):
    port = stack.free_port()
    up = churn("serve", "up", "--port", str(port), env=packaged)
    assert up.returncode == 0 and ready(port), up.stdout + up.stderr
    directory = ROOT.joinpath(packaged["CHURN_HOME"], "stack")
    server = int((directory / "serve.pid").read_text())
    workers = stack.descendants(server)
    os.killpg(server, signal.SIGKILL)  # the server dies; its workers live in sessions of their own
    time.sleep(1)
    assert any(stack.alive(w) for w in workers)  # still holding the port
    again = churn("serve", "up", "--port", str(port), env=packaged)
    assert again.returncode == 0, again.stdout + again.stderr
    assert ready(port) and not any(
        stack.alive(w) for w in workers
    )  # the orphans were stopped first
    down = churn("serve", "down", env=packaged)
    assert down.returncode == 0 and "stopped the service" in down.stdout
    assert stack.port_free(port)


def test_the_foreground_server_stops_every_worker_on_sigterm(packaged):
    port = stack.free_port()
    proc = subprocess.Popen(
        [str(stack.BIN / "churn"), "serve", "--port", str(port)],
        env=packaged,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not ready(port) and time.monotonic() < deadline:
            time.sleep(1)
        assert ready(port)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "the service and its workers are stopped" in out
    assert stack.port_free(port)
