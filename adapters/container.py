"""The service's container image, built offline from parts made on this machine.

`bentoml containerize` of the packaged Bento, on the slim base image named in bentofile.yaml
(``docker.base_image``). Nothing is fetched while the image builds: bentos/Dockerfile.template
installs the exact pins of bentos/requirements.txt from a wheelhouse held by a builder image
``<base image>-wheels`` (the base plus the wheels and uv) and copies only the installed environment
into the final image, so no wheel, compiler or package manager is left in it.

``churn container base`` makes both images locally. The default base is a Debian minbase root
filesystem with Python 3.11 made by debootstrap from the Debian mirror this host's apt uses, imported
with ``docker import`` (no image registry involved); a base image of the user's own (bentofile.yaml)
gets only the builder made from it. The wheelhouse is downloaded once with pip from the package index
this host's pip uses, or read from ``--wheels DIR`` on an air-gapped machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from adapters.tools import run_tool
from churn.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SERVICE_REQUIREMENTS = ROOT / "bentos" / "requirements.txt"
BIN = Path(sys.executable).parent
DEFAULT_BASE = "churn-serving-base:bookworm"
# trimmed from the root filesystem: caches and documentation nothing at run time reads
TRIM = ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale")
PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib")


class ContainerError(RuntimeError):
    """A step of the image build could not run; the message says what to do."""


def docker_unavailable() -> str | None:
    """Why no image can be built or run here, or None when a docker daemon answers."""
    if shutil.which("docker") is None:
        return "no docker client on PATH (apt-get install docker.io)"
    probe = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return "no docker daemon answers (start one: dockerd, or systemctl start docker)"
    return None


def docker(
    *args: str, capture: bool = True, env: dict[str, str] | None = None, stdin: str | None = None
) -> str:
    """Run a docker command; its stderr becomes the error."""
    done = subprocess.run(
        ["docker", *args],
        input=stdin,
        capture_output=capture,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if done.returncode != 0:
        raise ContainerError(f"docker {' '.join(args[:3])} failed: {(done.stderr or '').strip()}")
    return (done.stdout or "").strip()


def image_exists(tag: str) -> bool:
    return (
        subprocess.run(
            ["docker", "image", "inspect", tag], capture_output=True, check=False
        ).returncode
        == 0
    )


def base_image() -> str:
    """The base image bentofile.yaml names (``docker.base_image``)."""
    config = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    return str((config.get("docker") or {}).get("base_image") or DEFAULT_BASE)


def builder_image(base: str) -> str:
    """The builder bentos/Dockerfile.template names: the base image's reference with ``-wheels``."""
    return f"{base}-wheels"


def apt_mirror() -> str:
    """The Debian mirror this host's apt uses (never written anywhere, read at build time)."""
    for source in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in source.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    sources = Path("/etc/apt/sources.list")
    for line in sources.read_text().splitlines() if sources.is_file() else []:
        parts = line.split()
        if parts[:1] == ["deb"] and "security" not in line:
            return next(p for p in parts[1:] if "://" in p)
    raise ContainerError("no Debian mirror in /etc/apt/sources: pass --mirror URL")


def make_rootfs(target: Path, mirror: str) -> None:
    """A trimmed Debian bookworm minbase with Python 3.11 in ``target``."""
    if shutil.which("debootstrap") is None:
        raise ContainerError("debootstrap is not installed (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise ContainerError("debootstrap needs root to make the base image's root filesystem")
    if target.exists():
        shutil.rmtree(target)
    done = subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            "bookworm",
            str(target),
            mirror,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ContainerError(f"debootstrap failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    for path in TRIM:
        shutil.rmtree(target / path, ignore_errors=True)
        (target / path).mkdir(parents=True, exist_ok=True)


def import_rootfs(rootfs: Path, tag: str) -> None:
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    done = subprocess.run(
        ["docker", "import", "--change", 'CMD ["/usr/bin/python3.11"]', "-", tag],
        stdin=tar.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    tar.wait()
    if done.returncode != 0 or tar.returncode != 0:
        raise ContainerError(f"docker import of {rootfs} failed: {done.stderr.strip()}")


def download_wheels(target: Path, requirements: Path) -> None:
    """Every pin of ``requirements`` as a Linux wheel for Python 3.11 (no
    sdists: no compiler)."""
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            str(BIN / "python"),
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary=:all:",
            "--no-deps",
            "--python-version",
            "3.11",
            "--platform",
            "manylinux_2_28_x86_64",
            "--platform",
            "manylinux2014_x86_64",
            "--platform",
            "manylinux_2_17_x86_64",
            "--platform",
            "linux_x86_64",
            "-r",
            str(requirements),
            "-d",
            str(target),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise ContainerError(
            f"downloading the wheelhouse failed ({done.stderr.strip()[-1500:]}); on a machine without "
            f"a package index pass --wheels DIR with the wheels of {requirements.relative_to(ROOT)}"
        )


REQUIREMENTS_LABEL = "churn.requirements"
"""The builder image's label: the sha256 of the pins its wheelhouse was made for."""


def requirements_digest(requirements: Path) -> str:
    import hashlib

    return hashlib.sha256(requirements.read_bytes()).hexdigest()


def builder_current(builder: str, requirements: Path) -> bool:
    """Whether ``builder`` exists and holds the wheels of ``requirements`` as they are now: a
    builder made before the pins changed would fail the image's offline install."""
    done = subprocess.run(
        [
            "docker",
            "image",
            "inspect",
            "--format",
            f'{{{{ index .Config.Labels "{REQUIREMENTS_LABEL}" }}}}',
            builder,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode == 0 and done.stdout.strip() == requirements_digest(requirements)


def build_builder(
    base: str, wheels: Path, work: Path, requirements: Path, tag: str | None = None
) -> str:
    """``<base>-wheels`` (or ``tag``): the base image plus uv and the wheelhouse of
    ``requirements``, for the install stage only; labelled with the pins' digest."""
    uv = shutil.which("uv", path=str(BIN)) or shutil.which("uv")
    if uv is None:
        raise ContainerError("uv is not installed in the project's environment (make venv)")
    context = work / "builder"
    if context.exists():
        shutil.rmtree(context)
    context.mkdir(parents=True)
    shutil.copytree(wheels, context / "wheels")
    shutil.copy2(uv, context / "uv")
    (context / "Dockerfile").write_text(
        f"FROM {base}\nCOPY uv /usr/local/bin/uv\nCOPY wheels /wheels\n"
        "ENV UV_NO_INDEX=1 UV_FIND_LINKS=/wheels UV_PYTHON_DOWNLOADS=never\n"
        f"LABEL {REQUIREMENTS_LABEL}={requirements_digest(requirements)}\n"
    )
    tag = tag or builder_image(base)
    docker("build", "--quiet", "-t", tag, str(context), env={"DOCKER_BUILDKIT": "0"})
    shutil.rmtree(context)
    return tag


def make_base(
    settings: Settings,
    *,
    mirror: str | None = None,
    wheels: Path | None = None,
    force: bool = False,
) -> tuple[str, str]:
    """The base image (made with debootstrap when it is ours and missing) and its builder."""
    reason = docker_unavailable()
    if reason:
        raise ContainerError(reason)
    base = base_image()
    work = settings.container_dir
    if not image_exists(base) or (force and base == DEFAULT_BASE):
        if base != DEFAULT_BASE:
            raise ContainerError(
                f"base image {base} (bentofile.yaml docker.base_image) is not on this host: "
                "docker pull or docker load it first"
            )
        print(f"making {base} with debootstrap (about a minute)", flush=True)
        make_rootfs(work / "rootfs", mirror or apt_mirror())
        import_rootfs(work / "rootfs", base)
        shutil.rmtree(work / "rootfs")
    builder = builder_image(base)
    if not builder_current(builder, SERVICE_REQUIREMENTS) or force:
        if wheels is None:
            wheels = work / "wheels"
            print("downloading the wheelhouse of bentos/requirements.txt", flush=True)
            download_wheels(wheels, SERVICE_REQUIREMENTS)
        build_builder(base, wheels, work, SERVICE_REQUIREMENTS)
    return base, builder


@dataclass(frozen=True)
class Image:
    tag: str
    size_mb: float
    seconds: float


def git_commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else "nogit"


def source_commit() -> str:
    """The full commit of the checkout, ``-dirty`` when files differ from it: what an image built
    from the working tree holds (MLflow's lineage reads it as its git commit)."""
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    if head.returncode != 0:
        return "unknown"
    status = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain"],
        capture_output=True,
        text=True,
        check=False,
    )
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def image_tag(repository: str, model_version: str, commit: str) -> str:
    """Images are named by what they serve and the code that serves it: v<model version>-<commit>."""
    return f"{repository}:v{model_version}-{commit}"


def containerize(settings: Settings, bento: str, tag: str) -> Image:
    """`bentoml containerize` of a Bento from the project's store into ``tag``."""
    make_base(settings)
    started = time.monotonic()
    run_tool(
        [str(BIN / "bentoml"), "containerize", bento, "-t", tag, "--backend", "docker"],
        ContainerError,
        env={"BENTOML_HOME": str(settings.bentoml_home), "DOCKER_BUILDKIT": "0"},
        # BentoML resolves the Dockerfile template in its temporary build context only when that
        # context lies under the working directory
        cwd=tempfile.gettempdir(),
    )
    size = json.loads(docker("image", "inspect", "--format", "{{json .Size}}", tag))
    return Image(tag, size / 2**20, time.monotonic() - started)


# --- the flows image (deploy/flows/Dockerfile) ------------------------------------------------------

FLOWS_REPOSITORY = "churn-flows"
FLOWS_DOCKERFILE = ROOT / "deploy" / "flows" / "Dockerfile"
FLOWS_PROJECT = (
    "churn",
    "adapters",
    "tasks",
    "flows",
    "ops",
    "bentos",
    "feature_sql",
    "expectations",
    "deploy/environments",
    "prefect.yaml",
    "bentofile.yaml",
    "pyproject.toml",
)
"""What of the project the flows image holds: the code of every floor and the files flows read
relative to the project (the feature repo, the suites, the environments, the version in
pyproject.toml); no tests or docs."""


def flows_builder_image(base: str) -> str:
    """The builder deploy/flows/Dockerfile installs from: the base, uv and requirements.txt's wheels."""
    return f"{base}-flows-wheels"


def make_flows_builder(settings: Settings, wheels: Path | None = None, force: bool = False) -> str:
    """``<base>-flows-wheels``, made once (the base image first when it is missing): later builds
    send only the project's files to the daemon, not the wheelhouse."""
    base, _ = make_base(settings)
    builder = flows_builder_image(base)
    if not builder_current(builder, ROOT / "requirements.txt") or force:
        if wheels is None:
            wheels = settings.container_dir / "flows-wheels"
            print("downloading the wheelhouse of requirements.txt", flush=True)
            download_wheels(wheels, ROOT / "requirements.txt")
        build_builder(base, wheels, settings.container_dir, ROOT / "requirements.txt", tag=builder)
    return builder


def flows_context(target: Path, commit: str) -> Path:
    """The build context: the Dockerfile, requirements.txt and the project's files under project/
    (caches left out), plus REVISION with the commit."""
    if target.exists():
        shutil.rmtree(target)
    project = target / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    for name in FLOWS_PROJECT:
        source, into = ROOT / name, project / name
        if source.is_dir():
            shutil.copytree(source, into, ignore=ignore)
        else:
            into.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into)
    (project / "REVISION").write_text(commit + "\n")
    shutil.copy2(FLOWS_DOCKERFILE, target / "Dockerfile")
    shutil.copy2(ROOT / "requirements.txt", target / "requirements.txt")
    return target


def build_flows_image(
    settings: Settings, tag: str | None = None, wheels: Path | None = None
) -> Image:
    """The flows image, built offline from local images: ``churn-flows:<commit>`` by default."""
    reason = docker_unavailable()
    if reason:
        raise ContainerError(reason)
    builder = make_flows_builder(settings, wheels)
    base = builder.removesuffix("-flows-wheels")
    tag = tag or f"{FLOWS_REPOSITORY}:{git_commit()}"
    context = flows_context(settings.container_dir / "flows-context", source_commit())
    started = time.monotonic()
    docker(
        "build", "--quiet", "--build-arg", f"BASE={base}", "-t", tag, str(context),
        env={"DOCKER_BUILDKIT": "0"},
    )  # fmt: skip
    seconds = time.monotonic() - started
    shutil.rmtree(context)
    size = json.loads(docker("image", "inspect", "--format", "{{json .Size}}", tag))
    return Image(tag, size / 2**20, seconds)


def run_container(
    image: str,
    *,
    port: int,
    name: str,
    volume: str,
    token: str,
    extra: tuple[str, ...] = (),
) -> str:
    """Start the image detached on 127.0.0.1:``port``, read-only but /tmp, the log on ``volume``."""
    return docker(
        "run",
        "--detach",
        "--name",
        name,
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--publish",
        f"127.0.0.1:{port}:3000",
        "--volume",
        f"{volume}:/data",
        "--env",
        f"CHURN_API_TOKEN={token}",
        *extra,
        image,
    )


def wait_ready(port: int, container: str, timeout: float = 300) -> float:
    """Seconds until /readyz answers 200; the container's log when it exits or never answers."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        state = docker("inspect", "--format", "{{.State.Status}}", container)
        if state in {"exited", "dead"}:
            break
        time.sleep(1)
    logs = subprocess.run(
        ["docker", "logs", container], capture_output=True, text=True, check=False
    )
    # the messages, not the frames: a worker's error line is otherwise buried under the supervisor's
    lines = [
        line
        for line in (logs.stdout + logs.stderr).splitlines()
        if line.strip() and not line.startswith((" ", "Traceback", "The above exception"))
    ]
    raise ContainerError(f"container {container} not ready:\n" + "\n".join(lines[-30:]))
