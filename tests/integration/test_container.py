"""The service's image for real, where a docker daemon runs (`make container-test`): built offline on
the local base image, started read-only as its non-root user, ready, answering, healthy, logging to a
mounted volume, and stopped cleanly. Skipped with the reason where no daemon answers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from adapters import container
from churn.settings import ServiceSettings
from ops.stack import free_port
from tests.helpers import ROOT, train_champion

REASON = container.docker_unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"container tests: {REASON}")
TOKEN = "container-token"


def churn(home, raw, *args: str, extra: dict[str, str] | None = None) -> str:
    """A churn command in its own process: BentoML binds its store per process."""
    done = subprocess.run(
        [str(container.BIN / "churn"), *args],
        env={
            **os.environ,
            "CHURN_HOME": str(home),
            "CHURN_RAW_DIR": str(raw),
            "BENTOML_HOME": str(home / "bentoml"),
            **(extra or {}),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def image(prefect_server, small_world, tmp_path_factory):
    home = tmp_path_factory.mktemp("container-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHURN_HOME", str(home))
        mp.setenv("CHURN_RAW_DIR", str(small_world))
        from churn.settings import Settings

        train_champion()
        churn(home, small_world, "package")
        settings = Settings.from_env()
    bento = f"{ServiceSettings.from_env().service_name}:latest"
    tag = container.image_tag(f"churn-test-{uuid.uuid4().hex[:6]}", "1", "test")
    built = container.containerize(settings, bento, tag)
    print(f"\nimage {built.tag}: {built.size_mb:.0f} MB, built in {built.seconds:.0f} s")
    try:
        yield {"image": built, "home": home, "raw": small_world, "settings": settings}
    finally:
        subprocess.run(["docker", "rmi", "--force", tag], capture_output=True, check=False)


@pytest.fixture
def volume():
    name = f"churn-test-{uuid.uuid4().hex[:8]}"
    container.docker("volume", "create", name)
    yield name
    subprocess.run(["docker", "volume", "rm", "--force", name], capture_output=True, check=False)


def _read_log(image: str, volume: str) -> list[dict]:
    out = container.docker(
        "run", "--rm", "--volume", f"{volume}:/data", "--entrypoint", "sh", image, "-c",
        "cat /data/predictions/*.jsonl 2>/dev/null || true",
    )  # fmt: skip
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _wait_healthy(name: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = container.docker("inspect", "--format", "{{.State.Health.Status}}", name)
        if status == "healthy":
            break
        time.sleep(2)
    return status


def test_the_image_is_small_and_carries_no_build_tools(image):
    tag = image["image"].tag
    assert image["image"].size_mb < 900, f"{tag} is {image['image'].size_mb:.0f} MB"
    probe = container.docker(
        "run", "--rm", "--entrypoint", "sh", tag, "-c",
        "id -u; for t in gcc cc make uv pip apt-get; do command -v $t || true; done; "
        "ls /wheels 2>/dev/null | wc -l",
    )  # fmt: skip
    lines = probe.splitlines()
    assert lines[0] == "1034", "the image runs as BentoML's non-root user"
    # no compiler, no package installers (apt-get stays part of Debian's minbase but has no lists)
    assert [line for line in lines[1:-1] if not line.endswith("apt-get")] == [], lines
    assert lines[-1] == "0", "the wheelhouse stays in the builder stage"


def test_the_container_serves_logs_to_its_volume_and_stops_cleanly(image, volume):
    tag, name, port = image["image"].tag, f"churn-test-{uuid.uuid4().hex[:8]}", free_port()
    container.run_container(tag, port=port, name=name, volume=volume, token=TOKEN)
    try:
        ready = container.wait_ready(port, name)
        print(f"\n{tag} ready on /readyz after {ready:.1f} s (read-only root filesystem)")
        ids = _online_ids(image["home"], 3)
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
        ) as client:
            answer = client.post("/predict_by_id", json={"ids": ids})
            assert answer.status_code == 200, answer.text
            assert len(answer.json()) == 3
            assert client.get("/metadata").json()["model_version"] == "1"
            assert client.post("/predict_by_id", json={"ids": []}).status_code == 422
            assert (
                httpx.post(f"http://127.0.0.1:{port}/predict_by_id", json={"ids": ids}).status_code
                == 401
            )
        assert _wait_healthy(name) == "healthy"
        stopped = time.monotonic()
        container.docker("stop", "--time", "30", name)
        print(f"stopped in {time.monotonic() - stopped:.1f} s")
        assert container.docker("inspect", "--format", "{{.State.ExitCode}}", name) == "0"
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)
    logged = _read_log(tag, volume)
    assert len(logged) == 3 and {r["model_version"] for r in logged} == {"1"}


def test_a_bind_mounted_folder_the_user_cannot_write_is_one_clear_line(image, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    os.chmod(folder, 0o755)  # root-owned, not writable by uid 1034
    tag, name, port = image["image"].tag, f"churn-test-{uuid.uuid4().hex[:8]}", free_port()
    container.run_container(tag, port=port, name=name, volume=str(folder), token=TOKEN)
    try:
        with pytest.raises(container.ContainerError) as failed:
            container.wait_ready(port, name, timeout=180)
        assert "is not writable by uid 1034" in str(failed.value)
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)
    os.chown(folder, 1034, 1034)  # the documented fix
    container.run_container(tag, port=port, name=name, volume=str(folder), token=TOKEN)
    try:
        container.wait_ready(port, name)
    finally:
        container.docker("stop", name)
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)


def _online_ids(home, n: int) -> list:
    import pandas as pd

    snapshot = pd.read_parquet(next((home / "bentoml" / "models").rglob("online_snapshot.parquet")))
    return [int(v) for v in snapshot["customer_id"].head(n)]


def _environment(tmp_path, port: int) -> Path:
    folder = tmp_path / "environments"
    folder.mkdir()
    text = (ROOT / "deploy" / "environments" / "dev.yml").read_text()
    (folder / "dev.yml").write_text(
        text.replace("port: 3000", f"port: {port}").replace(
            "volume: churn-dev-data", f"volume: churn-test-{uuid.uuid4().hex[:8]}"
        )
    )
    return folder


def test_deploy_replaces_the_live_container_with_no_failed_request_and_rolls_back_a_broken_image(
    image, tmp_path
):
    """make deploy-model ENV=dev twice (model v1, then a retrained v2) while a bounded client keeps
    calling the stable endpoint; then a broken image, which must leave v2 serving."""
    from adapters import docker_rollout, rollout_log

    if shutil.which("nginx") is None:
        pytest.skip("the docker target's endpoint is nginx: apt-get install nginx-light")
    home, raw, port = image["home"], image["raw"], free_port()
    extra = {"CHURN_ENVIRONMENTS_DIR": str(_environment(tmp_path, port)), "CHURN_API_TOKEN": TOKEN}
    folder = docker_rollout.state_dir(image["settings"].deploy_dir, "dev")
    try:
        print(churn(home, raw, "deploy", "--env", "dev", extra=extra))
        endpoint = f"http://127.0.0.1:{port}"
        ids = _online_ids(home, 2)
        answers, failures, stop = [], [], threading.Event()

        def client():
            with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as http:
                while not stop.is_set() and len(answers) + len(failures) < 20_000:
                    try:
                        reply = http.post(f"{endpoint}/predict_by_id", json={"ids": ids})
                        (answers if reply.status_code == 200 else failures).append(
                            reply.json()[0]["model_version"]
                            if reply.status_code == 200
                            else reply.status_code
                        )
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))
                    time.sleep(0.02)

        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CHURN_HOME", str(home))
            mp.setenv("CHURN_RAW_DIR", str(raw))
            train_champion()  # v2, promoted
        churn(home, raw, "package")
        print(churn(home, raw, "deploy", "--env", "dev", extra=extra))
        time.sleep(2)
        stop.set()
        thread.join(60)
        print(f"{len(answers)} requests through the switch, {len(failures)} failed")
        assert failures == [], failures[:5]
        assert {"1", "2"} <= set(answers) and answers[-1] == "2", set(answers)
        live = docker_rollout.live(folder)
        assert live.model_version == "2"

        # a broken image (its workers die at start-up) never goes live: v2 keeps serving
        broken = f"{live.image}-broken"
        container.docker(
            "build", "-t", broken, "-",
            stdin=f"FROM {live.image}\nENV CHURN_MAX_BATCH=0\n",
            env={"DOCKER_BUILDKIT": "0"},
        )  # fmt: skip
        from churn.environments import load_environment

        target = load_environment(Path(extra["CHURN_ENVIRONMENTS_DIR"]), "dev").target
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CHURN_API_TOKEN", TOKEN)
            with pytest.raises(docker_rollout.RolloutError, match="failed before the switch"):
                docker_rollout.rollout(
                    folder,
                    target,
                    broken,
                    "3",
                    docker_rollout.http_smoke(ids, "3"),
                    ready_timeout=120,
                )
        assert docker_rollout.live(folder) == live
        reply = httpx.post(
            f"{endpoint}/predict_by_id",
            json={"ids": ids},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        assert reply.status_code == 200 and reply.json()[0]["model_version"] == "2"
        assert rollout_log.served(image["settings"].deploy_dir) == {"dev": {"1", "2"}}
    finally:
        print(churn(home, raw, "undeploy", "--env", "dev", extra=extra))
        log = image["settings"].deploy_dir / "rollouts.jsonl"
        built = (
            {json.loads(line)["image"] for line in log.read_text().splitlines()}
            if log.is_file()
            else set()
        )
        for tag in built | {f"{t}-broken" for t in built}:
            subprocess.run(["docker", "rmi", "--force", tag], capture_output=True, check=False)


def _spin(deadline: float) -> None:
    while time.monotonic() < deadline:
        pass


def test_an_app_with_string_ids_deploys_through_the_same_flow_while_every_core_is_busy(
    prefect_server, tmp_path
):
    """The last stage on data unlike the example: the app repo (string user ids, half its users
    churning, its own model and service names) trained, packaged and rolled out by `churn deploy
    --env dev` to the docker target, its smoke prediction by the app's own ids, while bounded busy
    loops (started and stopped here) hold every core."""
    import multiprocessing

    import pandas as pd

    from adapters import docker_rollout
    from tests.fixtures.real_shaped import APP_REPO, write_app

    if shutil.which("nginx") is None:
        pytest.skip("the docker target's endpoint is nginx: apt-get install nginx-light")
    raw, home, port = write_app(tmp_path / "raw"), tmp_path / "home", free_port()
    extra = {
        "CHURN_FEATURE_REPO": str(APP_REPO),
        "CHURN_MODEL_NAME": "app-activity",
        "CHURN_SERVICE_NAME": "app",
        "CHURN_DUCKDB_MEMORY_LIMIT": "1GB",
        "CHURN_ENVIRONMENTS_DIR": str(_environment(tmp_path, port)),
        "CHURN_API_TOKEN": TOKEN,
    }
    assert "Overall: APPROVED" in churn(home, raw, "train", extra=extra)
    churn(home, raw, "package", extra=extra)
    deadline = time.monotonic() + 900  # the loops stop by themselves even if this test dies
    loops = [
        multiprocessing.Process(target=_spin, args=(deadline,), daemon=True)
        for _ in range(2 * (os.cpu_count() or 2))
    ]
    for loop in loops:
        loop.start()
    try:
        print(churn(home, raw, "deploy", "--env", "dev", extra=extra))
        live = docker_rollout.live(docker_rollout.state_dir(home / "deploy", "dev"))
        assert live.model_version == "1" and live.image.startswith("churn-service:v1-"), live
        snapshot = pd.read_parquet(next((home / "bentoml" / "models").rglob("*snapshot.parquet")))
        ids = [str(v) for v in snapshot["user_key"].head(3)]
        reply = httpx.post(
            f"http://127.0.0.1:{port}/predict_by_id",
            json={"ids": ids},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        assert [a["user_key"] for a in reply.json()] == ids
        assert {a["model_version"] for a in reply.json()} == {"1"}
    finally:
        for loop in loops:
            loop.terminate()
            loop.join(10)
        print(churn(home, raw, "undeploy", "--env", "dev", extra=extra))
        log = home / "deploy" / "rollouts.jsonl"
        for line in log.read_text().splitlines() if log.is_file() else []:
            tag = json.loads(line)["image"]
            subprocess.run(["docker", "rmi", "--force", tag], capture_output=True, check=False)
