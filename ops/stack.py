"""The local stack: a Prefect server, a process worker and an MLflow server in the background.

``churn stack up`` starts them (127.0.0.1 only, logs and pid files), saying what it waits for, and
trusts a health answer only from the process it started (the listening socket must belong to it; the
worker must be online on the Prefect server under the name this start gave it), so another stack on
the same port is an error, not a success. ``churn stack down`` stops exactly the processes it
started (by the pids it recorded), ``churn stack status`` reports each part, ``churn stack deploy``
registers every deployment in prefect.yaml. Everything lives under ``$CHURN_HOME/stack``; ``env.sh``
there points a shell at the running server.

Prefect 3.9's own ``prefect server start --background`` / ``stop`` are not used: the background
server's output goes to a pipe nobody reads (no log to show when it fails), ``stop`` sends one
SIGTERM without waiting, and the worker and MLflow need the same supervision anyway.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.tools import run_tool
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
    pid = _pid(settings.stack_dir / "prefect-server.pid")
    port = recorded_port(settings, "prefect-server")
    if pid is None or port is None or not owns_port(pid, port):
        return None
    return port if _healthy(f"http://127.0.0.1:{port}/api/health") else None


def recorded_port(settings: Settings, name: str) -> int | None:
    """The port ``up`` started ``name`` on (``<name>.port``), if any."""
    port_file = settings.stack_dir / f"{name}.port"
    text = port_file.read_text().strip() if port_file.is_file() else ""
    return int(text) if text.isdigit() else None


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


def running_pid(name: str, directory: Path) -> int | None:
    """The pid of the process started under ``name`` while it is alive."""
    pid = _pid(directory / f"{name}.pid")
    return pid if pid is not None and not _is_zombie(pid) else None


def running(name: str, directory: Path) -> bool:
    """Whether the process started under ``name`` is alive."""
    return running_pid(name, directory) is not None


def live_port(name: str, directory: Path) -> int | None:
    """The port the process started under ``name`` listens on (``<name>.port``), while it runs."""
    port_file = directory / f"{name}.port"
    if not running(name, directory) or not port_file.is_file():
        return None
    return int(port_file.read_text())


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
    port: int | None = None,
) -> None:
    """Wait until ``url`` answers 200. With ``pid``: fail at once (with the log's tail) when that
    process exits; with ``pid`` and ``port``: the answer counts only when the socket listening on
    ``port`` belongs to ``pid`` or a process below it (else another server answered)."""
    started = time.monotonic()
    deadline = started + timeout
    last = started
    while time.monotonic() < deadline:
        if pid is not None and not alive(pid):
            raise StackError(f"it exited before answering on {url}\n{_tail(log)}")
        if _healthy(url):
            if pid is None or port is None or owns_port(pid, port):
                return
            raise StackError(
                f"{url} answered, but not from the process started here (pid {pid}): "
                f"port {port} is held by {holder(port)}"
            )
        time.sleep(1)
        if progress is not None and time.monotonic() - last >= 10:
            last = time.monotonic()
            progress(last - started)
    raise StackError(f"{url} did not answer within {timeout:.0f}s\n{_tail(log)}")


def _tail(log: Path | None) -> str:
    return log.read_text(errors="replace")[-2000:] if log and log.is_file() else ""


def _listening_inodes(port: int) -> set[str]:
    """The inodes of the TCP sockets listening on ``port`` (any address), from /proc/net."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if (
                len(fields) > 9
                and fields[3] == "0A"
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                inodes.add(fields[9])
    return inodes


def _holding(pids: list[int], inodes: set[str]) -> list[int]:
    """Those of ``pids`` with an open file descriptor on one of the sockets ``inodes``."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    found = []
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:  # gone, or another user's
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    found.append(pid)
                    break
            except OSError:
                continue
    return found


def owns_port(pid: int, port: int) -> bool:
    """Whether the socket listening on ``port`` belongs to ``pid`` or a process below it."""
    inodes = _listening_inodes(port)
    return bool(inodes) and bool(_holding([pid, *descendants(pid)], inodes))


def holder(port: int) -> str:
    """Who listens on ``port``, for an error message: a pid and its command, as far as visible."""
    inodes = _listening_inodes(port)
    if not inodes:
        return "nothing now"
    pids = _holding(sorted(int(p.name) for p in Path("/proc").glob("[0-9]*")), inodes)
    if not pids:
        return "a process of another user"
    pid = min(pids)
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        command = "?"
    return f"pid {pid} ({command[:120]})"


def run_as(user: str | None) -> dict[str, Any]:
    """subprocess's keyword arguments that run a child as OS ``user`` and its primary group only
    (None: as this process)."""
    if user is None:
        return {}
    import pwd

    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


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
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **env},
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        **run_as(user),
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


def prefect_server_command(port: int) -> list[str]:
    """`prefect server start` on 127.0.0.1:``port``."""
    return [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]


def worker_command(name: str) -> list[str]:
    """A process worker on the stack's pool, under ``name`` (how the server tells it apart)."""
    return [
        str(BIN / "prefect"),
        "worker",
        "start",
        "--pool",
        POOL,
        "--type",
        "process",
        "--name",
        name,
    ]


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


def mlflow_command(settings: Settings, port: int, ui: bool = False) -> list[str]:
    """``mlflow server`` (or ``mlflow ui``) on the pipeline's SQLite store, 127.0.0.1:``port``, one
    web worker (more only slow start-up here). With a tracking server configured, the store under
    ``CHURN_HOME`` is the one a stack's server serves."""
    uri = settings.tracking_uri
    return [
        str(BIN / "mlflow"),
        "ui" if ui else "server",
        "--backend-store-uri",
        uri if uri.startswith("sqlite:") else f"sqlite:///{settings.mlflow_db}",
        "--artifacts-destination",
        str(settings.mlartifacts_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def start_mlflow_server(
    settings: Settings, directory: Path, cwd: Path, port: int = MLFLOW_PORT, timeout: float = 180
) -> str:
    """An MLflow server on the pipeline's embedded SQLite store, answering from our process."""
    settings.home.mkdir(parents=True, exist_ok=True)
    pid = start_process("mlflow-server", mlflow_command(settings, port), {}, directory, cwd)
    (directory / "mlflow-server.port").write_text(str(port))
    url = f"http://127.0.0.1:{port}"
    wait_healthy(f"{url}/health", timeout, directory / "mlflow-server.log", pid=pid, port=port)
    return url


PARTS = ("prefect-server", "prefect-worker", "mlflow-server")
"""What ``up`` starts, by pid-file name."""
TITLES = {
    "prefect-server": "Prefect server",
    "prefect-worker": "process worker",
    "mlflow-server": "MLflow server",
    "moto-server": "S3 stand-in",
    "postgres": "PostgreSQL",
}


def check_ports(ports: dict[str, int]) -> None:
    """Every port free on 127.0.0.1, else one line naming who holds it and the variable to change."""
    if len(set(ports.values())) < len(ports):
        raise StackError(f"{' and '.join(ports)} must differ, got {ports}")
    for variable, port in ports.items():
        if not port_free(port):
            raise StackError(
                f"port {port} on 127.0.0.1 is taken by {holder(port)} (another stack?): stop it, "
                f"or pick a free port: make up {variable}=<port>"
            )


def up(
    settings: Settings,
    project_dir: Path,
    port: int = DEFAULT_PORT,
    timeout: float = 180,
    mlflow_port: int = MLFLOW_PORT,
    say: Callable[[str], None] = lambda line: None,
) -> dict[str, str]:
    """Start the Prefect server and the MLflow server, the process work pool and a worker on it;
    each counts as up only when the answer comes from the process started here. On any failure,
    stop what this call started."""
    directory = settings.stack_dir
    already = [TITLES[name] for name in PARTS if running(name, directory)]
    if already:
        raise StackError(
            f"the stack is already running ({', '.join(already)}; `churn stack status`): "
            "`make down` first"
        )
    check_ports({"PORT": port, "MLFLOW_PORT": mlflow_port})
    for name in PARTS:  # the files of a stack that died without `make down`
        for suffix in (".pid", ".port", ".tree", ".name"):
            (directory / f"{name}{suffix}").unlink(missing_ok=True)
    settings.home.mkdir(parents=True, exist_ok=True)
    env = prefect_env(settings, port)
    started = []
    try:
        server = start_process(
            "prefect-server",
            prefect_server_command(port),
            env,
            directory,
            project_dir,
        )
        started.append("prefect-server")
        (directory / "prefect-server.port").write_text(str(port))
        mlflow = start_process(
            "mlflow-server", mlflow_command(settings, mlflow_port), {}, directory, project_dir
        )
        started.append("mlflow-server")
        (directory / "mlflow-server.port").write_text(str(mlflow_port))
        say(
            f"starting the Prefect server (pid {server}) on 127.0.0.1:{port} and the MLflow "
            f"server (pid {mlflow}) on 127.0.0.1:{mlflow_port}; logs in {directory}"
        )
        wait_part(
            say,
            "Prefect server",
            f"http://127.0.0.1:{port}/api/health",
            timeout,
            directory / "prefect-server.log",
            server,
            port,
        )
        say(f"creating or updating the work pool {POOL}")
        ensure_pool(settings, env, project_dir)
        name = f"churn-worker-{secrets.token_hex(4)}"  # how the server tells our worker apart
        worker = start_process(
            "prefect-worker",
            worker_command(name),
            {**env, "CHURN_HOME": str(settings.home)},
            directory,
            project_dir,
        )
        started.append("prefect-worker")
        (directory / "prefect-worker.name").write_text(name)
        wait_part(
            say,
            "MLflow server",
            f"http://127.0.0.1:{mlflow_port}/health",
            timeout,
            directory / "mlflow-server.log",
            mlflow,
            mlflow_port,
        )
        wait_worker(settings, port, name, worker, timeout, say)
    except BaseException:
        for part in reversed(started):
            stop_process(part, directory)
        raise
    (directory / "env.sh").write_text(
        "".join(f"export {k}={v}\n" for k, v in env.items())
        + f"export CHURN_HOME={settings.home}\n"
    )
    return env


def wait_part(
    say: Callable[[str], None],
    title: str,
    url: str,
    timeout: float,
    log: Path,
    pid: int,
    port: int,
) -> None:
    started = time.monotonic()
    say(f"waiting for the {title} ({url})")
    try:
        wait_healthy(
            url,
            timeout,
            log,
            progress=lambda s: say(f"  still waiting for the {title}: {s:.0f}s"),
            pid=pid,
            port=port,
        )
    except StackError as exc:
        raise StackError(f"the {title} did not start: {exc}") from None
    say(f"{title} ready in {time.monotonic() - started:.0f}s")


def worker_state(port: int, name: str) -> dict[str, Any] | None:
    """The Prefect server's record of the worker called ``name`` in the pool, or None."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/work_pools/{POOL}/workers/filter",
        data=json.dumps({"limit": 200}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            workers = json.loads(response.read())
    except (OSError, ValueError):
        return None
    found: dict[str, Any] | None = next((w for w in workers if w.get("name") == name), None)
    return found


def wait_worker(
    settings: Settings,
    port: int,
    name: str,
    pid: int,
    timeout: float,
    say: Callable[[str], None],
) -> None:
    """Until the Prefect server sees the worker started here (by the name it was given) online."""
    started = last = time.monotonic()
    log = settings.stack_dir / "prefect-worker.log"
    say(f"waiting for the process worker {name} to report to the Prefect server")
    while time.monotonic() - started < timeout:
        if not alive(pid):
            raise StackError(f"the process worker exited before it reported\n{_tail(log)}")
        state = worker_state(port, name)
        if state is not None and state.get("status") == "ONLINE":
            say(f"process worker ready in {time.monotonic() - started:.0f}s")
            return
        time.sleep(1)
        if time.monotonic() - last >= 10:
            last = time.monotonic()
            say(f"  still waiting for the process worker: {last - started:.0f}s")
    raise StackError(f"the process worker did not report within {timeout:.0f}s\n{_tail(log)}")


@dataclass(frozen=True)
class PartStatus:
    """One part of the stack as ``churn stack status`` shows it."""

    name: str
    title: str
    pid: int | None
    port: int | None
    healthy: bool
    detail: str


def _server_status(settings: Settings, name: str, health: str) -> PartStatus:
    directory = settings.stack_dir
    pid, port = _pid(directory / f"{name}.pid"), recorded_port(settings, name)
    pid = pid if pid is not None and alive(pid) else None
    url = f"http://127.0.0.1:{port}"
    if pid is None:
        healthy, detail = False, "not running"
    elif port is None or not _healthy(url + health):
        healthy, detail = False, f"no answer on {url}{health} (log {directory / name}.log)"
    elif not owns_port(pid, port):
        healthy, detail = False, f"{url} is answered by {holder(port)}, not by pid {pid}"
    else:
        healthy, detail = True, url
    return PartStatus(name, TITLES[name], pid, port, healthy, detail)


def status(settings: Settings) -> list[PartStatus]:
    """Each part: its pid if alive, its port, and whether it is healthy (answering from our
    process; the worker: online on the stack's server under the name it was started with)."""
    directory = settings.stack_dir
    server = _server_status(settings, "prefect-server", "/api/health")
    mlflow = _server_status(settings, "mlflow-server", "/health")
    pid = _pid(directory / "prefect-worker.pid")
    pid = pid if pid is not None and alive(pid) else None
    name_file = directory / "prefect-worker.name"
    name = name_file.read_text().strip() if name_file.is_file() else None
    if pid is None:
        healthy, detail = False, "not running"
    elif not server.healthy or server.port is None or name is None:
        healthy, detail = False, "alive, but the Prefect server is not healthy"
    else:
        state = worker_state(server.port, name) or {}
        healthy = state.get("status") == "ONLINE"
        beat = _seconds_ago(state.get("last_heartbeat_time"))
        detail = (
            f"pool {POOL}, worker {name} "
            + ("online" if healthy else f"not online ({state.get('status', 'unknown')})")
            + (f", last heartbeat {beat:.0f}s ago" if beat is not None else "")
        )
    worker = PartStatus("prefect-worker", TITLES["prefect-worker"], pid, None, healthy, detail)
    return [server, worker, mlflow]


def _seconds_ago(moment: str | None) -> float | None:
    from datetime import UTC, datetime

    try:
        return (datetime.now(UTC) - datetime.fromisoformat(moment or "")).total_seconds()
    except (ValueError, TypeError):
        return None


def stack_mlflow_on(settings: Settings, port: int) -> bool:
    """Whether the stack's own MLflow server serves the pipeline's store on ``port`` right now."""
    mlflow = _server_status(settings, "mlflow-server", "/health")
    return mlflow.healthy and mlflow.port == port


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
    run_tool(
        [prefect, "work-pool", *action, "--base-job-template", str(template)],
        StackError,
        full_env,
        project_dir,
    )


def deploy(settings: Settings, project_dir: Path, port: int, active: bool = False) -> str:
    """Register every deployment in prefect.yaml (and its triggers) against the running server;
    schedules stay paused unless ``active``."""
    env = {**os.environ, **prefect_env(settings, port), "CHURN_PROJECT_DIR": str(project_dir)}
    out = run_tool(
        [str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], StackError, env, project_dir
    )
    if active:
        resumed = set_schedules(project_dir, env, active=True)
        return out + f"\nschedules active: {', '.join(resumed)}\n"
    return out + "\nschedules paused (make deploy ACTIVE=1 turns them on)\n"


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


def down(settings: Settings, say: Callable[[str], None] = lambda line: None) -> list[str]:
    """Stop exactly what ``up`` (either profile) started, by the pids it recorded."""
    directory = settings.stack_dir
    stopped = []
    for name in STOP_ORDER:
        pid = _pid(directory / f"{name}.pid")
        if pid is not None:
            say(f"stopping the {TITLES[name]} (pid {pid})")
        if stop_process(name, directory):
            stopped.append(name)
    for name in STOP_ORDER:
        for suffix in (".port", ".name"):
            (directory / f"{name}{suffix}").unlink(missing_ok=True)
    (directory / "env.sh").unlink(missing_ok=True)
    return stopped
