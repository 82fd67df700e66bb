"""The flows image for real, where a docker daemon runs (`make flows-image-test`): built offline from
the local base image, non-root with no entrypoint (the kubernetes worker's `prefect flow-run execute`
is the command), no build or dev tools, and on a read-only root filesystem with only /tmp writable,
as the base job template runs it: the flows import, Prefect's CLI answers, the features flow
publishes a feature set from generated data, and MLflow's lineage finds the commit the image was
built from. Skipped with the reason where no daemon answers."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from adapters import container
from churn.settings import Settings

REASON = container.docker_unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"flows image tests: {REASON}")


@pytest.fixture(scope="module")
def image():
    tag = f"churn-flows-test-{uuid.uuid4().hex[:6]}:test"
    built = container.build_flows_image(Settings.from_env(), tag=tag)
    print(f"\nimage {built.tag}: {built.size_mb:.0f} MB, built in {built.seconds:.0f} s")
    try:
        yield built
    finally:
        subprocess.run(["docker", "rmi", "--force", tag], capture_output=True, check=False)


def run(image: str, *command: str, read_only: bool = True) -> str:
    """The command in a fresh container as the Job runs it: read-only root, /tmp an empty tmpfs."""
    flags = ["--read-only", "--tmpfs", "/tmp"] if read_only else []
    return container.docker("run", "--rm", *flags, image, *command)


def test_the_image_is_non_root_entrypoint_free_and_carries_no_build_or_dev_tools(image):
    config = json.loads(
        container.docker("image", "inspect", "--format", "{{json .Config}}", image.tag)
    )
    assert config.get("Entrypoint") is None, "the worker's command must run as given"
    assert config["User"] == "1034:1034" and config["WorkingDir"] == "/opt/churn"
    probe = run(
        image.tag, "sh", "-c",
        "id -u; for t in gcc cc make uv pip pip3 git; do command -v $t || true; done; "
        "python -c \"import importlib.util as u; print([m for m in ('ruff', 'mypy', 'hypothesis', "
        "'kubernetes_validate', 'zizmor') if u.find_spec(m)])\"",
    )  # fmt: skip
    lines = probe.splitlines()
    assert lines[0] == "1034"
    assert lines[1:] == ["[]"], lines
    assert image.size_mb < 2000, f"{image.tag} is {image.size_mb:.0f} MB"


def test_the_flows_import_and_prefect_answers_on_a_read_only_root(image):
    assert run(image.tag, "python", "-c", "import flows.train, flows.monitor; print('ok')") == "ok"
    version = run(image.tag, "prefect", "version")
    assert "3.9.1" in version, version
    from ops.cli import project_version

    assert (
        run(image.tag, "python", "-m", "ops.cli", "--version").strip()
        == f"churn {project_version()}"
    )
    assert "Usage" in run(image.tag, "prefect", "flow-run", "execute", "--help")


def test_the_features_flow_runs_in_the_image_and_lineage_names_the_commit(image):
    """As its Job runs it, read-only with an empty /tmp and CHURN_HOME on a volume (here in /tmp),
    with Prefect's temporary server in the container instead of the worker's API."""
    out = run(
        image.tag, "sh", "-c",
        "export CHURN_HOME=/tmp/home CHURN_DUCKDB_MEMORY_LIMIT=512MB CHURN_DUCKDB_THREADS=1 "
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=180 PREFECT_SERVER_ANALYTICS_ENABLED=false "
        "PREFECT_LOGGING_LEVEL=WARNING && "
        "python -m ops.cli generate --customers 500 --months 8 >/dev/null && "
        "python -m ops.cli features build >/dev/null && "
        "test -f /tmp/home/features/latest.json && echo published && "
        "python -c 'from adapters.mlflow_store import git_commit; print(git_commit())'",
    )  # fmt: skip
    assert out.splitlines()[-2:] == ["published", container.source_commit()], out
