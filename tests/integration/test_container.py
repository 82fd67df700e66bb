"""The service's image for real, where a docker daemon runs (`make container-test`): built offline on
the local base image, started read-only as its non-root user, ready, answering, healthy, logging to a
mounted volume, and stopped cleanly. Skipped with the reason where no daemon answers."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import httpx
import pytest

from adapters import container
from ops.stack import free_port
from tests.helpers import train_champion

REASON = container.docker_unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"container tests: {REASON}")
TOKEN = "container-token"


@pytest.fixture(scope="module")
def image(prefect_server, small_world, tmp_path_factory):
    home = tmp_path_factory.mktemp("container-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHURN_HOME", str(home))
        mp.setenv("CHURN_RAW_DIR", str(small_world))
        mp.setenv("BENTOML_HOME", str(home / "bentoml"))
        from churn.settings import Settings
        from flows.package import package

        train_champion()
        packaged = package()
        settings = Settings.from_env()
        tag = container.image_tag(f"churn-test-{uuid.uuid4().hex[:6]}", "1", "test")
        built = container.containerize(settings, packaged.bento, tag)
        print(f"\nimage {built.tag}: {built.size_mb:.0f} MB, built in {built.seconds:.0f} s")
        try:
            yield {"image": built, "packaged": packaged, "home": home}
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
