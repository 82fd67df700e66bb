"""The local stack: a Prefect server, a process worker and an MLflow server in the background.

``churn stack up`` starts them (127.0.0.1 only, logs and pid files), ``churn stack down`` stops exactly the processes it
started (by the pids it recorded), ``churn stack deploy`` registers every deployment in prefect.yaml.
Everything lives under ``$CHURN_HOME/stack``; ``env.sh`` there points a shell at the running server.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from churn.settings import Settings

POOL = "churn-pool"
DEFAULT_PORT = 4200
MLFLOW_PORT = 5000
BIN = Path(sys.executable).parent


class StackError(RuntimeError):
    """A stack service failed to start or answer."""


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prefect_env(settings: Settings, port: int | None = None) -> dict[str, str]:
    """Prefect settings that keep its state inside the project; with a port, point at that server."""
    env = {
        "PREFECT_HOME": str(settings.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "INFO"),
    }
    if port is not None:
        env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
    return env


def running_port(settings: Settings) -> int | None:
    """The port of the stack's Prefect server when it is up and answering, else None."""
    port_file = settings.stack_dir / "prefect-server.port"
    if not port_file.is_file() or _pid(settings.stack_dir / "prefect-server.pid") is None:
        return None
    port = int(port_file.read_text())
    return port if _healthy(f"http://127.0.0.1:{port}/api/health") else None


def _pid(pid_file: Path) -> int | None:
    if not pid_file.is_file():
        return None
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not _is_zombie(pid)


def running(name: str, directory: Path) -> bool:
    """Whether the process started under ``name`` is alive."""
    return _pid(directory / f"{name}.pid") is not None and not _is_zombie(
        _pid(directory / f"{name}.pid") or 0
    )


def port_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now (closed connections in TIME_WAIT do not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_healthy(
    url: str,
    timeout: float,
    log: Path | None = None,
    progress: Callable[[float], None] | None = None,
    pid: int | None = None,
) -> None:
    """Wait until ``url`` answers 200; with ``pid``, give up as soon as that process has exited."""
    started = time.monotonic()
    deadline = started + timeout
    last = started
    while time.monotonic() < deadline:
        if _healthy(url):
            return
        if pid is not None and not alive(pid):
            tail = log.read_text()[-2000:] if log and log.is_file() else ""
            raise StackError(f"the process serving {url} exited before it answered\n{tail}")
        time.sleep(1)
        if progress is not None and time.monotonic() - last >= 10:
            last = time.monotonic()
            progress(last - started)
    tail = log.read_text()[-2000:] if log and log.is_file() else ""
    raise StackError(f"{url} did not answer within {timeout:.0f}s\n{tail}")


def start_process(
    name: str,
    cmd: list[str],
    env: dict[str, str],
    directory: Path,
    cwd: Path,
    user: str | None = None,
) -> int:
    """Start ``cmd`` in its own session with output to ``<name>.log``; record its pid in ``<name>.pid``.
    With ``user`` (we are root), the process runs as that OS user and its primary group."""
    directory.mkdir(parents=True, exist_ok=True)
    if _pid(directory / f"{name}.pid") is not None:
        raise StackError(
            f"{name} is already running (pid file {directory / f'{name}.pid'}); run `churn stack down`"
        )
    log = open(directory / f"{name}.log", "ab")  # noqa: SIM115  (the child keeps writing to it)
    as_user: dict[str, Any] = {}
    if user is not None:
        import pwd

        entry = pwd.getpwnam(user)
        as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **env},
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        **as_user,
    )
    (directory / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (BentoML's workers run in sessions of their own, outside its group)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def serve_command(port: int) -> list[str]:
    """`bentoml serve` of the project's service on 127.0.0.1:``port``."""
    return [
        str(BIN / "bentoml"),
        "serve",
        "bentos.service:ChurnService",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def record_tree(name: str, directory: Path) -> list[int]:
    """Write the pids now running below the process started under ``name`` (with their start times)
    to ``<name>.tree``: if that process is killed, its children are re-parented and no longer below
    it, yet they may go on serving and hold the port. ``stop_process`` stops them from this record."""
    pid = _pid(directory / f"{name}.pid")
    below = descendants(pid) if pid else []
    (directory / f"{name}.tree").write_text("".join(f"{p} {_started(p)}\n" for p in below))
    return below


def _started(pid: int) -> str:
    """The process's start time in clock ticks since boot: with the pid, it names one process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def stop_process(name: str, directory: Path, timeout: float = 20) -> bool:
    """Stop the process group we started under ``name``, every process below it, and every process
    recorded below it earlier (``record_tree``) that is still the same process.

    SIGINT first (Prefect workers ignore SIGTERM), then SIGTERM and SIGKILL; processes that left
    the group (BentoML workers) are stopped by the pids found under the one we started.
    """
    pid_file, tree_file = directory / f"{name}.pid", directory / f"{name}.tree"
    pid = _pid(pid_file)
    pid_file.unlink(missing_ok=True)
    recorded = []
    if tree_file.is_file():
        for line in tree_file.read_text().splitlines():
            child, started = line.split(" ", 1) if " " in line else (line, "")
            if child.isdigit() and started and _started(int(child)) == started:
                recorded.append(int(child))
        tree_file.unlink()
    below = descendants(pid) if pid is not None else []
    try:
        if pid is not None:
            _stop_group(pid, timeout)
    finally:
        for child in dict.fromkeys([*below, *recorded]):
            _stop_pid(child)
    return pid is not None or bool(recorded)


def _stop_pid(pid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            if _is_zombie(pid):
                return
            time.sleep(0.2)


def _stop_group(pid: int, timeout: float) -> None:
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
                if _is_zombie(pid):
                    return
            except ProcessLookupError:
                return
            time.sleep(0.3)
    return


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return False


def start_mlflow_server(
    settings: Settings, directory: Path, cwd: Path, port: int = MLFLOW_PORT, timeout: float = 180
) -> str:
    """An MLflow server on the pipeline's embedded SQLite store (one web worker: more only slow start-up here)."""
    settings.home.mkdir(parents=True, exist_ok=True)
    start_process(
        "mlflow-server",
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{settings.mlflow_db}",
            "--artifacts-destination",
            str(settings.mlartifacts_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        {},
        directory,
        cwd,
    )
    url = f"http://127.0.0.1:{port}"
    wait_healthy(f"{url}/health", timeout, directory / "mlflow-server.log")
    return url


def up(
    settings: Settings,
    project_dir: Path,
    port: int = DEFAULT_PORT,
    timeout: float = 180,
    mlflow_port: int = MLFLOW_PORT,
) -> dict[str, str]:
    """Start the Prefect server, the process work pool and a worker on it, and the MLflow server."""
    directory = settings.stack_dir
    env = prefect_env(settings, port)
    start_process(
        "prefect-server",
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env,
        directory,
        project_dir,
    )
    (directory / "prefect-server.port").write_text(str(port))
    wait_healthy(f"http://127.0.0.1:{port}/api/health", timeout, directory / "prefect-server.log")
    ensure_pool(settings, env, project_dir)
    start_process(
        "prefect-worker",
        [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"],
        {**env, "CHURN_HOME": str(settings.home)},
        directory,
        project_dir,
    )
    start_mlflow_server(settings, directory, project_dir, port=mlflow_port, timeout=timeout)
    (directory / "env.sh").write_text(
        "".join(f"export {k}={v}\n" for k, v in env.items())
        + f"export CHURN_HOME={settings.home}\n"
    )
    return env


def pool_template(settings: Settings, project_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """Prefect's process base job template with the project's home and checkout as defaults, so a
    run's environment is declared on the pool (and visible in the UI), not inherited from a shell."""
    done = subprocess.run(
        [str(BIN / "prefect"), "work-pool", "get-default-base-job-template", "--type", "process"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    template: dict[str, Any] = json.loads(done.stdout)
    variables = template["variables"]["properties"]
    variables["env"]["default"] = {
        "CHURN_HOME": str(settings.home),
        "CHURN_PROJECT_DIR": str(project_dir),
    }
    variables["working_dir"]["default"] = str(project_dir)
    return template


def ensure_pool(settings: Settings, env: dict[str, str], project_dir: Path) -> None:
    """The process work pool with the project's base job template (created, or updated in place)."""
    prefect = str(BIN / "prefect")
    full_env = {**os.environ, **env}
    template = settings.stack_dir / "base-job-template.json"
    template.parent.mkdir(parents=True, exist_ok=True)
    template.write_text(json.dumps(pool_template(settings, project_dir, env), indent=2))
    exists = subprocess.run(
        [prefect, "work-pool", "inspect", POOL], env=full_env, cwd=project_dir, capture_output=True
    )
    action = ["update", POOL] if exists.returncode == 0 else ["create", POOL, "--type", "process"]
    subprocess.run(
        [prefect, "work-pool", *action, "--base-job-template", str(template)],
        env=full_env,
        cwd=project_dir,
        check=True,
        capture_output=True,
    )


def deploy(settings: Settings, project_dir: Path, port: int, active: bool = False) -> str:
    """Register every deployment in prefect.yaml (and its triggers) against the running server;
    schedules stay paused unless ``active``."""
    env = {**os.environ, **prefect_env(settings, port), "CHURN_PROJECT_DIR": str(project_dir)}
    result = subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", "deploy", "--all"],
        env=env,
        cwd=project_dir,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StackError(
            f"prefect deploy failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    if active:
        resumed = set_schedules(project_dir, env, active=True)
        return result.stdout + f"\nschedules active: {', '.join(resumed)}\n"
    return result.stdout + "\nschedules paused (make deploy ACTIVE=1 turns them on)\n"


def set_schedules(project_dir: Path, env: dict[str, str], active: bool) -> list[str]:
    """Turn every schedule of prefect.yaml's deployments on or off; the deployments touched."""
    import yaml

    config = yaml.safe_load((project_dir / "prefect.yaml").read_text())
    names = [
        f"{d['entrypoint'].rsplit(':', 1)[1]}/{d['name']}"
        for d in config["deployments"]
        if d.get("schedules")
    ]
    script = (
        "import sys\n"
        "from prefect.client.orchestration import get_client\n"
        "with get_client(sync_client=True) as c:\n"
        "    for name in sys.argv[2:]:\n"
        "        d = c.read_deployment_by_name(name)\n"
        "        for s in d.schedules:\n"
        "            c.update_deployment_schedule(d.id, s.id, active=sys.argv[1] == 'on')\n"
    )
    subprocess.run(
        [str(BIN / "python"), "-c", script, "on" if active else "off", *names],
        env=env,
        check=True,
        capture_output=True,
    )
    return names


STOP_ORDER = ("prefect-worker", "prefect-server", "mlflow-server", "moto-server", "postgres")
"""Clients before the stores they use; the last two run only in the prod profile (ops/prod_stack.py)."""


def down(settings: Settings) -> list[str]:
    """Stop exactly what ``up`` (either profile) started, by the pids it recorded."""
    directory = settings.stack_dir
    stopped = [name for name in STOP_ORDER if stop_process(name, directory)]
    (directory / "env.sh").unlink(missing_ok=True)
    return stopped
