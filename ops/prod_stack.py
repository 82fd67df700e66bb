"""The production profile of the local stack: PostgreSQL, an S3 stand-in, MLflow with auth, Prefect.

``churn stack up --profile prod`` (``make up PROFILE=prod``) starts, all on 127.0.0.1:

- **PostgreSQL** (the Debian package's server binaries): a cluster initialised under
  ``$CHURN_HOME/stack/postgres`` with a generated password, databases ``prefect``, ``mlflow`` and
  ``mlflow_auth``. PostgreSQL refuses to run as root: as root the cluster belongs to, and runs as,
  the OS user ``postgres`` that Debian's package creates (``CHURN_PG_OS_USER`` names another); as
  any other user it runs as that user. Unix sockets are off: TCP on 127.0.0.1 only.
- **moto's S3 server** as the object store stand-in (its state lives in the process; objects it
  spools go under ``$CHURN_HOME/stack/moto``; ``make down`` discards them), with the buckets
  ``churn-mlflow`` (MLflow's artifacts) and ``churn-data`` (``CHURN_STORAGE``: the prediction log).
- **MLflow's tracking server** on the ``mlflow`` database, artifacts proxied to
  ``s3://churn-mlflow/``, with its basic-auth app on (users in ``mlflow_auth``; the admin's
  generated password is what the pipeline's client sends as ``MLFLOW_TRACKING_USERNAME`` /
  ``MLFLOW_TRACKING_PASSWORD``).
- **Prefect's server** on the ``prefect`` database (``postgresql+asyncpg://``) and a process worker
  whose flow runs inherit the profile's environment (kept out of the work pool, so no secret is
  stored in Prefect or shown in its UI).

Secrets (the database password, MLflow's admin password, the S3 stand-in's keys) are generated once
into ``$CHURN_HOME/stack/prod-secrets.json`` (0600); ``env.sh`` (0600) points a shell at the stack.
``churn stack down`` stops exactly what was started, MLflow's web workers included.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets as secrets_lib
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from churn.settings import Settings
from ops import stack

PG_USER = "churn"
"""The cluster's superuser (a database role, not an OS user)."""
DATABASES = ("prefect", "mlflow", "mlflow_auth")
MLFLOW_BUCKET = "churn-mlflow"
DATA_BUCKET = "churn-data"
MLFLOW_ADMIN = "churn-admin"
REGION = "us-east-1"
SECRETS_FILE = "prod-secrets.json"
PORTS_FILE = "prod-ports.json"


@dataclass(frozen=True)
class Ports:
    prefect: int
    mlflow: int
    postgres: int
    moto: int


def _write_private(path: Path, text: str) -> None:
    """Create or replace ``path`` readable by its owner only (never world-readable, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def load_secrets(directory: Path) -> dict[str, str]:
    """The profile's generated secrets: created once, then reused (the cluster keeps its password)."""
    path = directory / SECRETS_FILE
    stored = dict(json.loads(path.read_text())) if path.is_file() else {}
    generators = {
        "postgres_password": lambda: secrets_lib.token_urlsafe(24),
        "mlflow_admin_password": lambda: secrets_lib.token_urlsafe(24),
        "mlflow_flask_secret_key": lambda: secrets_lib.token_urlsafe(32),
        "s3_access_key": lambda: "churn" + secrets_lib.token_hex(6),
        "s3_secret_key": lambda: secrets_lib.token_urlsafe(30),
    }
    values = {name: stored.get(name) or make() for name, make in generators.items()}
    if values != stored:
        _write_private(path, json.dumps(values, indent=2))
    return values


def pg_bindir(settings: Settings) -> Path:
    """The PostgreSQL server binaries: ``CHURN_PG_BIN``, else the newest Debian install, else PATH."""
    candidates = [settings.pg_bin] if settings.pg_bin else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).resolve().parent)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "postgres").is_file():
            return candidate
    raise stack.StackError(
        "PostgreSQL's server binaries (initdb, postgres) were not found: `apt-get install postgresql` "
        "(Debian) or set CHURN_PG_BIN to the directory holding them"
    )


def pg_os_user(settings: Settings) -> str | None:
    """The OS user the cluster runs as when we are root (PostgreSQL refuses root), else None."""
    if os.geteuid() != 0:
        return None
    name = settings.pg_os_user
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise stack.StackError(
            f"running as root, the PostgreSQL cluster needs an OS user to run as and {name!r} does not "
            "exist: install Debian's postgresql package (it creates `postgres`) or set CHURN_PG_OS_USER"
        ) from None
    return name


def _as_user(user: str | None, cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (as ``user`` and its primary group when given) and capture its output."""
    return subprocess.run(cmd, capture_output=True, text=True, **stack.run_as(user))


def init_cluster(settings: Settings, password: str) -> Path:
    """``initdb`` a cluster under ``directory/postgres/data`` once (scram-sha-256 for every login)."""
    directory = settings.stack_dir
    data = directory / "postgres" / "data"
    if (data / "PG_VERSION").is_file():
        return data
    user = pg_os_user(settings)
    data.mkdir(parents=True, exist_ok=True)
    os.chmod(data, 0o700)
    pwfile = directory / "postgres" / ".pwfile"
    _write_private(pwfile, password + "\n")
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (data.parent, data, pwfile):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        check = _as_user(user, ["test", "-w", str(data)])
        if check.returncode != 0:
            pwfile.unlink(missing_ok=True)
            raise stack.StackError(
                f"the OS user {user!r} cannot reach {data}: every directory above it must be searchable "
                "by that user (chmod o+x), or set CHURN_HOME to a path under one that is"
            )
    try:
        done = _as_user(
            user,
            [
                str(pg_bindir(settings) / "initdb"),
                "-D",
                str(data),
                "-U",
                PG_USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if done.returncode != 0:
        shutil.rmtree(data, ignore_errors=True)
        raise stack.StackError(f"initdb failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return data


def pg_url(port: int, password: str, database: str, driver: str = "postgresql") -> str:
    return f"{driver}://{PG_USER}:{quote(password, safe='')}@127.0.0.1:{port}/{database}"


def start_postgres(settings: Settings, port: int, password: str, timeout: float) -> None:
    directory = settings.stack_dir
    data = init_cluster(settings, password)
    user = pg_os_user(settings)
    stack.start_process(
        "postgres",
        [
            str(pg_bindir(settings) / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
        ],
        {},
        directory,
        directory,
        user=user,
    )
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            con = psycopg.connect(pg_url(port, password, "postgres"), connect_timeout=3)
            break
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline or not stack.running("postgres", directory):
                tail = (directory / "postgres.log").read_text()[-2000:]
                raise stack.StackError(
                    f"PostgreSQL did not start on port {port}: {exc}\n{tail}"
                ) from exc
            time.sleep(0.5)
    con.autocommit = True
    with con:
        existing = {row[0] for row in con.execute("select datname from pg_database").fetchall()}
        for name in DATABASES:
            if name not in existing:
                con.execute(f'create database "{name}"')


def s3_env(port: int, values: dict[str, str]) -> dict[str, str]:
    """What every S3 client (boto3, s3fs, MLflow's server) needs for the stand-in: the standard AWS
    variables, so no code knows it is not AWS."""
    return {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": values["s3_access_key"],
        "AWS_SECRET_ACCESS_KEY": values["s3_secret_key"],
        "AWS_DEFAULT_REGION": REGION,
    }


def start_moto(
    directory: Path,
    port: int,
    values: dict[str, str],
    timeout: float,
    buckets: tuple[str, ...] = (MLFLOW_BUCKET, DATA_BUCKET),
) -> None:
    """moto's S3 server on ``port`` (pid recorded as ``moto-server`` in ``directory``), with
    ``buckets`` made; the benchmarks start one with their own bucket."""
    data = directory / "moto"
    data.mkdir(parents=True, exist_ok=True)
    pid = stack.start_process(
        "moto-server",
        [str(stack.BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        {"TMPDIR": str(data)},
        directory,
        data,
    )
    stack.wait_healthy(
        f"http://127.0.0.1:{port}/moto-api/", timeout, directory / "moto-server.log", pid=pid
    )
    import boto3

    env = s3_env(port, values)
    s3 = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in buckets:
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)


def mlflow_auth_config(directory: Path, ports: Ports, values: dict[str, str]) -> Path:
    """MLflow's basic-auth config (0600: it holds the database password and the admin's)."""
    path = directory / "mlflow-auth.ini"
    _write_private(
        path,
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {pg_url(ports.postgres, values['postgres_password'], 'mlflow_auth')}\n"
        f"admin_username = {MLFLOW_ADMIN}\n"
        f"admin_password = {values['mlflow_admin_password']}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
        # PBKDF2 on every request costs a core here: check a credential once a minute per worker
        "auth_cache_ttl_seconds = 60\n",
    )
    return path


def launch_mlflow(directory: Path, project_dir: Path, ports: Ports, values: dict[str, str]) -> int:
    """MLflow on PostgreSQL with artifacts proxied to the S3 stand-in, basic auth on, one web worker;
    returns its pid at once (it takes a minute or more to answer here: ``up`` starts Prefect meanwhile)."""
    config = mlflow_auth_config(directory, ports, values)
    pid = stack.start_process(
        "mlflow-server",
        [
            str(stack.BIN / "mlflow"),
            "server",
            "--app-name",
            "basic-auth",
            "--artifacts-destination",
            f"s3://{MLFLOW_BUCKET}/",
            "--host",
            "127.0.0.1",
            "--port",
            str(ports.mlflow),
            "--workers",
            "1",
        ],
        {
            # --backend-store-uri by its variable: a password on a command line is in every `ps`
            "MLFLOW_BACKEND_STORE_URI": pg_url(
                ports.postgres, values["postgres_password"], "mlflow"
            ),
            "MLFLOW_AUTH_CONFIG_PATH": str(config),
            # the auth app's CSRF tokens are signed with it (the same across restarts)
            "MLFLOW_FLASK_SERVER_SECRET_KEY": values["mlflow_flask_secret_key"],
            **s3_env(ports.moto, values),
        },
        directory,
        project_dir,
    )
    return pid


def client_env(settings: Settings, ports: Ports, values: dict[str, str]) -> dict[str, str]:
    """Everything a pipeline process needs to use the prod stack (what env.sh exports)."""
    return {
        **stack.prefect_env(settings, ports.prefect),
        "CHURN_HOME": str(settings.home),
        "CHURN_TRACKING_URI": f"http://127.0.0.1:{ports.mlflow}",
        "MLFLOW_TRACKING_USERNAME": MLFLOW_ADMIN,
        "MLFLOW_TRACKING_PASSWORD": values["mlflow_admin_password"],
        "CHURN_STORAGE": f"s3://{DATA_BUCKET}",
        **s3_env(ports.moto, values),
    }


def choose_ports(
    directory: Path,
    prefect: int | None,
    mlflow: int | None,
    postgres: int | None,
    moto: int | None,
) -> Ports:
    """Given ports, else the ones this stack used last time if still free, else free ones."""
    previous = {}
    if (directory / PORTS_FILE).is_file():
        previous = json.loads((directory / PORTS_FILE).read_text())

    def pick(name: str, given: int | None) -> int:
        if given:
            return given
        last = previous.get(name)
        return int(last) if last and stack.port_free(int(last)) else stack.free_port()

    return Ports(
        prefect=pick("prefect", prefect),
        mlflow=pick("mlflow", mlflow),
        postgres=pick("postgres", postgres),
        moto=pick("moto", moto),
    )


def recorded_ports(directory: Path) -> Ports:
    """The ports the prod stack in ``directory`` was started on."""
    return Ports(**json.loads((directory / PORTS_FILE).read_text()))


def up(
    settings: Settings,
    project_dir: Path,
    port: int | None = None,
    mlflow_port: int | None = None,
    pg_port: int | None = None,
    moto_port: int | None = None,
    timeout: float = 180,
    say: Callable[[str], None] = lambda line: None,
) -> dict[str, str]:
    """Start the prod profile; returns the client environment (also written to env.sh, 0600).
    Each server counts as up only when the answer comes from the process started here; whatever
    started is stopped again when a later step fails."""
    directory = settings.stack_dir
    directory.mkdir(parents=True, exist_ok=True)
    already = [stack.TITLES[name] for name in stack.STOP_ORDER if stack.running(name, directory)]
    if already:
        raise stack.StackError(
            f"the stack is already running ({', '.join(already)}; `churn stack status`): "
            "`make down` first"
        )
    ports = choose_ports(directory, port, mlflow_port, pg_port, moto_port)
    for name, value in vars(ports).items():
        if not stack.port_free(value):
            raise stack.StackError(
                f"port {value} for {name} is taken by {stack.holder(value)}: pass another"
            )
    (directory / PORTS_FILE).write_text(json.dumps(vars(ports)))
    values = load_secrets(directory)
    env = client_env(settings, ports, values)
    try:
        say(f"starting PostgreSQL on 127.0.0.1:{ports.postgres} (cluster {directory / 'postgres'})")
        start_postgres(settings, ports.postgres, values["postgres_password"], timeout)
        say(f"starting the S3 stand-in on 127.0.0.1:{ports.moto}")
        start_moto(directory, ports.moto, values, timeout)
        # the two servers start side by side: each spends most of a minute importing and migrating
        mlflow_pid = launch_mlflow(directory, project_dir, ports, values)
        (directory / "mlflow-server.port").write_text(str(ports.mlflow))
        server_env = {
            **stack.prefect_env(settings, ports.prefect),
            "PREFECT_API_DATABASE_CONNECTION_URL": pg_url(
                ports.postgres, values["postgres_password"], "prefect", "postgresql+asyncpg"
            ),
        }
        prefect_pid = stack.start_process(
            "prefect-server",
            stack.prefect_server_command(ports.prefect),
            server_env,
            directory,
            project_dir,
        )
        (directory / "prefect-server.port").write_text(str(ports.prefect))
        say(
            f"starting the Prefect server (pid {prefect_pid}) on 127.0.0.1:{ports.prefect} and "
            f"the MLflow server (pid {mlflow_pid}) on 127.0.0.1:{ports.mlflow}; logs in {directory}"
        )
        stack.wait_part(
            say,
            stack.TITLES["prefect-server"],
            f"http://127.0.0.1:{ports.prefect}/api/health",
            timeout,
            directory / "prefect-server.log",
            prefect_pid,
            ports.prefect,
        )
        say(f"creating or updating the work pool {stack.POOL}")
        stack.ensure_pool(settings, stack.prefect_env(settings, ports.prefect), project_dir)
        name = f"churn-worker-{secrets_lib.token_hex(4)}"  # how the server tells our worker apart
        worker_pid = stack.start_process(
            "prefect-worker",
            stack.worker_command(name),
            env,
            directory,
            project_dir,
        )
        (directory / "prefect-worker.name").write_text(name)
        stack.wait_part(
            say,
            stack.TITLES["mlflow-server"],
            f"http://127.0.0.1:{ports.mlflow}/health",
            timeout,
            directory / "mlflow-server.log",
            mlflow_pid,
            ports.mlflow,
        )
        stack.record_tree("mlflow-server", directory)  # its web workers, stopped by these pids too
        stack.wait_worker(settings, ports.prefect, name, worker_pid, timeout, say)
    except BaseException:
        stack.down(settings)
        raise
    _write_private(
        directory / "env.sh", "".join(f"export {k}={_shell_quote(v)}\n" for k, v in env.items())
    )
    return env


def _shell_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def status(settings: Settings) -> list[stack.PartStatus]:
    """The profile's own stores (shown while their pids are recorded): alive, and listening on
    their recorded port from that process."""
    directory = settings.stack_dir
    if not (directory / "postgres.pid").is_file():
        return []
    ports = recorded_ports(directory)
    parts = []
    for name, port in (("postgres", ports.postgres), ("moto-server", ports.moto)):
        pid = stack.running_pid(name, directory)
        if pid is None:
            healthy, detail = False, "not running"
        elif not stack.owns_port(pid, port):
            healthy, detail = (
                False,
                f"not listening on 127.0.0.1:{port} (log {directory / name}.log)",
            )
        else:
            healthy, detail = True, f"127.0.0.1:{port}"
        parts.append(stack.PartStatus(name, stack.TITLES[name], pid, port, healthy, detail))
    return parts
