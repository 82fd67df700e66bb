"""Blue-green rollout of the service's image on one docker host.

Clients talk to nginx on 127.0.0.1:<port> (the environment's stable endpoint); nginx proxies to the
live container on a free loopback port. A rollout starts the new image beside the old one, waits for
/readyz, sends a smoke prediction straight to it, points nginx at it (``nginx -s reload``: old workers
finish the requests they hold, so no client sees a failure), checks the new model answers through
the endpoint, and only then stops the old container. Any failure before the switch removes the new
container and leaves the old one serving; a failure after it switches nginx back.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from adapters import container
from churn.environments import DockerTarget, smoke_problem
from churn.settings import ServiceSettings


class RolloutError(RuntimeError):
    """The rollout did not complete; the message says what serves now."""


@dataclass(frozen=True)
class Live:
    container: str
    port: int
    image: str
    model_version: str


def state_dir(deploy_dir: Path, env: str) -> Path:
    return deploy_dir / env


def live(folder: Path) -> Live | None:
    path = folder / "live.json"
    return Live(**json.loads(path.read_text())) if path.is_file() else None


def api_token(folder: Path) -> str:
    """The service's bearer token for this environment: CHURN_API_TOKEN, else one made once."""
    given = ServiceSettings.from_env().api_token
    if given:
        return given
    path = folder / "api-token"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def nginx_config(folder: Path, port: int, upstream: int) -> str:
    return f"""worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {folder}/nginx-tmp/body;
    proxy_temp_path {folder}/nginx-tmp/proxy;
    fastcgi_temp_path {folder}/nginx-tmp/fastcgi;
    uwsgi_temp_path {folder}/nginx-tmp/uwsgi;
    scgi_temp_path {folder}/nginx-tmp/scgi;
    client_max_body_size 32m;
    upstream churn_live {{ server 127.0.0.1:{upstream}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://churn_live;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_read_timeout 120s;
        }}
    }}
}}
"""


def _nginx_pid(folder: Path) -> int | None:
    try:
        pid = int((folder / "nginx.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def point_proxy(folder: Path, port: int, upstream: int) -> None:
    """nginx on 127.0.0.1:``port`` to 127.0.0.1:``upstream``: started, or reloaded gracefully."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise RolloutError(
            "nginx is not installed (apt-get install nginx-light): it is the stable endpoint"
        )
    (folder / "nginx-tmp").mkdir(parents=True, exist_ok=True)
    conf = folder / "nginx.conf"
    conf.write_text(nginx_config(folder, port, upstream))
    test = subprocess.run(
        [nginx, "-t", "-q", "-c", str(conf), "-p", str(folder)], capture_output=True, text=True
    )
    if test.returncode != 0:
        raise RolloutError(f"nginx rejected its config: {test.stderr.strip()}")
    running = _nginx_pid(folder) is not None
    command = [nginx, "-c", str(conf), "-p", str(folder)] + (["-s", "reload"] if running else [])
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RolloutError(
            f"nginx did not {'reload' if running else 'start'}: {done.stderr.strip()}"
        )


def stop_proxy(folder: Path) -> bool:
    pid = _nginx_pid(folder)
    if pid is None:
        return False
    os.kill(pid, 15)  # TERM: nginx's fast shutdown, by the pid it recorded
    for _ in range(50):
        if _nginx_pid(folder) is None:
            break
        time.sleep(0.1)
    return True


def _version_through(url: str, token: str) -> str | None:
    try:
        answer = httpx.get(
            f"{url}/metadata", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        return str(answer.json().get("model_version")) if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def rollout(
    folder: Path,
    target: DockerTarget,
    image: str,
    model_version: str,
    smoke: Callable[[str, str], None],
    ready_timeout: float = 300,
) -> tuple[Live, Live | None]:
    """Replace the live container with ``image``; returns (new, old). ``smoke(url, token)`` raises
    when the prediction is wrong."""
    folder.mkdir(parents=True, exist_ok=True)
    token, old = api_token(folder), live(folder)
    name = f"{target.name}-v{model_version}-{uuid.uuid4().hex[:6]}"
    port = _free_port()
    container.run_container(image, port=port, name=name, volume=target.volume, token=token)
    new = Live(name, port, image, model_version)
    try:
        container.wait_ready(port, name, timeout=ready_timeout)
        smoke(f"http://127.0.0.1:{port}", token)
    except Exception as exc:
        _remove(name)
        still = f"{old.image} keeps serving" if old else "nothing was serving"
        raise RolloutError(f"{image} failed before the switch ({exc}); {still}") from exc
    point_proxy(folder, target.port, port)
    endpoint = f"http://127.0.0.1:{target.port}"
    deadline = time.monotonic() + 30
    while _version_through(endpoint, token) != model_version and time.monotonic() < deadline:
        time.sleep(0.5)
    if _version_through(endpoint, token) != model_version:
        if old:
            point_proxy(folder, target.port, old.port)
        _remove(name)
        raise RolloutError(f"{endpoint} did not answer with model {model_version}; switched back")
    (folder / "live.json").write_text(json.dumps(asdict(new)))
    if old:
        time.sleep(2)  # nginx's old workers finish the requests they hold on the old container
        subprocess.run(
            ["docker", "stop", "--time", "30", old.container], capture_output=True, check=False
        )
        _remove(old.container)
    return new, old


def take_down(folder: Path) -> list[str]:
    """Stop the environment's proxy and live container (what ``rollout`` started)."""
    stopped = []
    current = live(folder)
    if current:
        subprocess.run(
            ["docker", "stop", "--time", "30", current.container], capture_output=True, check=False
        )
        _remove(current.container)
        (folder / "live.json").unlink()
        stopped.append(current.container)
    if stop_proxy(folder):
        stopped.append("nginx")
    return stopped


def http_smoke(ids: list[object], model_version: str) -> Callable[[str, str], None]:
    """A smoke test: ``ids`` scored over HTTP, every answer from ``model_version``."""

    def check(url: str, token: str) -> None:
        answer = httpx.post(
            f"{url}/predict_by_id",
            json={"ids": ids},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        problem = smoke_problem(answer.json(), ids, model_version)
        if answer.status_code != 200 or problem:
            raise RuntimeError(f"smoke prediction: HTTP {answer.status_code}, {problem}")

    return check


def _remove(name: str) -> None:
    subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
