"""``churn`` command line: generate data, list features, run flows in-process, the demo.

Heavy imports (Prefect, DuckDB, pandas) happen inside each command, so ``churn --help`` is instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from churn.monitoring import MonitorResult


def _settings():
    from churn.settings import Settings

    return Settings.from_env()


def _use_prefect() -> None:
    """Before Prefect is imported: keep its state in the project (created here: Prefect's temporary
    server cannot create its database's directory) and use the stack's server if it is up."""
    import os

    from ops.stack import prefect_env, running_port

    settings = _settings()
    port = None if os.environ.get("PREFECT_API_URL") else running_port(settings)
    for key, value in prefect_env(settings, port).items():
        os.environ.setdefault(key, value)
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)


EPHEMERAL_TIMEOUT = "Timed out while attempting to connect to ephemeral Prefect API server"


def explain(exc: BaseException) -> str:
    """One line for the user: the error's message, or for a Prefect start-up failure, why it failed."""
    message = str(exc)
    if EPHEMERAL_TIMEOUT not in message:
        return message
    import os
    import re

    code = re.search(r"exited with code (-?\d+)", message)
    stderr = message.split(" stderr: ", 1)[1] if " stderr: " in message else ""
    cause = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    return (
        "Prefect's temporary API server did not start"
        + (f" (it exited with code {code.group(1)})" if code else " in time")
        + (f": {cause}" if cause else "")
        + f"; PREFECT_HOME is {os.environ.get('PREFECT_HOME')}. Start a local server with `make up` "
        "(flows then report to it), or set PREFECT_API_URL"
    )


def _trained(settings: Any, what: str) -> None:
    """Instantly, before Prefect starts: a home with no tracking store has no model to ``what``."""
    if (
        settings.tracking_uri == f"sqlite:///{settings.mlflow_db}"
        and not settings.mlflow_db.is_file()
    ):
        raise RuntimeError(
            f"nothing to {what}: no model has been trained under {settings.home} yet: run "
            "`make demo` (or `make features` then `make train`) first"
        )


def _champion(settings: Any, model: str, what: str) -> None:
    """Before the flow starts: the registered model has a @champion to ``what``."""
    _trained(settings, what)
    from adapters import mlflow_store, registry

    if registry.alias_version(mlflow_store.connect(settings), model, registry.CHAMPION) is None:
        raise RuntimeError(
            f"nothing to {what}: {model} has no @champion (no trained model passed the gates "
            "yet): run `make train` until one is APPROVED (`churn verdict --run-id ...` says why not)"
        )


def _check_package(args: argparse.Namespace) -> None:
    settings = _settings()
    _trained(settings, "package")
    from adapters.feature_sets import LATEST

    if not (settings.features_dir / LATEST).is_file():
        raise RuntimeError(
            f"nothing to package: no feature set is published under {settings.features_dir} "
            "(the online snapshot the service needs): run `make features` first"
        )
    _champion(settings, args.model or settings.model_name, "package")


def _check_monitor(args: argparse.Namespace) -> None:
    settings = _settings()
    given = json.loads(args.params) if args.params else {}
    _champion(settings, given.get("model_name") or settings.model_name, "monitor")


def _check_service(args: argparse.Namespace) -> None:
    """``simulate`` and ``replay`` need a running service: say so before Prefect starts."""
    import httpx

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    with httpx.Client(base_url=args.url, headers=headers, timeout=30) as client:
        _metadata(client, args.url)


def _check_world(args: argparse.Namespace) -> None:
    _check_service(args)
    settings = _settings()
    if not (settings.raw_dir / "world.json").is_file():
        raise RuntimeError(
            f"no synthetic world under {settings.raw_dir} to replay: `make demo` first (its "
            "world has a drift period for simulate)"
        )


def cmd_generate(args: argparse.Namespace) -> int:
    from adapters.object_store import join
    from adapters.raw_data import write_world
    from churn.settings import Location, is_url
    from churn.synthetic import WorldParams

    settings = _settings()
    out: Location = settings.raw_dir
    if args.out:
        out = args.out if is_url(args.out) else Path(args.out)
    params = WorldParams(
        customers=args.customers,
        months=args.months,
        start=args.start,
        drift_months=args.drift_months,
        late_fraction=args.late_fraction,
        activity=args.activity,
        seed=args.seed,
    )
    started = time.perf_counter()
    counts = write_world(params, out)
    seconds = time.perf_counter() - started
    for period, tables in counts.items():
        total = sum(tables.values())
        print(
            f"{period}: {total:,} rows in {seconds:.1f}s -> {out if period == 'history' else join(out, period)}"
        )
        for name, n in tables.items():
            print(f"  {name:<14} {n:>12,}")
    return 0


def cmd_features_list(args: argparse.Namespace) -> int:
    from adapters.feature_engine import load_feature_repo

    repo = load_feature_repo(Path(args.repo) if args.repo else _settings().feature_repo)
    rows = [
        (col.name, view.name, col.dtype, view.sql_hash, col.description)
        for view in repo.views
        for col in view.spec.columns
    ]
    if args.json:
        keys = ("feature", "view", "dtype", "sql_hash", "description")
        print(json.dumps([dict(zip(keys, r)) for r in rows], indent=2))
        return 0
    widths = [
        max(len(str(r[i])) for r in rows + [("feature", "view", "dtype", "sql_hash", "")])
        for i in range(4)
    ]
    header = ("feature", "view", "dtype", "sql_hash", "description")
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row[:4], widths)) + "  " + row[4])
    print(f"\n{len(rows)} features in {len(repo.views)} views ({repo.root})")
    return 0


def cmd_repo_check(args: argparse.Namespace) -> int:
    """The feature repo on a sample of entities and dates, in seconds, without Prefect."""
    from adapters.repo_check import check_repo

    started = time.perf_counter()
    rows = check_repo(_settings(), entities=args.entities, dates=args.dates)
    width = max(len(r.check) for r in rows)
    for r in rows:
        print(f"{r.check:<{width}}  {r.status:<4}  {r.seconds:5.2f}s  {r.detail}")
    failed = [r for r in rows if r.status == "FAIL"]
    warned = [r for r in rows if r.status == "WARN"]
    verdict = "FAILED" if failed else "passed with warnings" if warned else "passed"
    print(
        f"\nrepo check {verdict}: {len(rows)} checks, {len(failed)} failed, {len(warned)} warnings "
        f"in {time.perf_counter() - started:.1f}s"
    )
    if failed:
        print(f"error: {failed[0].check}: {failed[0].detail}", file=sys.stderr)
    return 1 if failed else 0


def cmd_expectations_generate(args: argparse.Namespace) -> int:
    from adapters.feature_engine import load_feature_repo
    from adapters.validation import write_suites

    settings = _settings()
    out = Path(args.out) if args.out else settings.expectations_dir
    for path in write_suites(load_feature_repo(settings.feature_repo), out):
        print(path)
    return 0


def cmd_features_build(args: argparse.Namespace) -> int:
    _use_prefect()
    from churn.params import FeaturesParams
    from flows.features import features

    chosen = {
        k: getattr(args, k)
        for k in (
            "first_as_of",
            "last_as_of",
            "every_days",
            "every_months",
            "online_as_of",
            "partitions",
        )
    }
    params = FeaturesParams(**{k: v for k, v in chosen.items() if v is not None})
    result = features(params)
    print(json.dumps({"version": result.version, "path": str(result.path)}, indent=2))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    _use_prefect()
    from churn.params import TrainParams
    from flows.train import train

    params = TrainParams(**json.loads(args.params)) if args.params else TrainParams()
    if args.search:
        params = params.model_copy(update={"search": True})
    result = train(params)
    if args.outputs:
        append_outputs(
            Path(args.outputs),
            {
                "run_id": result.run.run_id,
                "model_version": result.version,
                "verdict": result.decision,
            },
        )
    print(result.report)
    print(
        json.dumps(
            {
                "run_id": result.run.run_id,
                "model_name": result.model_name,
                "version": result.version,
                "decision": result.decision,
                "promoted": result.promoted,
                "champion": result.promotion.champion,
                "metrics": result.metrics,
                "decision_threshold": result.decision_threshold,
            },
            indent=2,
        )
    )
    return 0


def append_outputs(path: Path, values: dict[str, str]) -> None:
    """Append ``key=value`` lines (the format of GitHub Actions' ``$GITHUB_OUTPUT`` file)."""
    for key, value in values.items():
        if "\n" in value or "\r" in value or "=" in key:
            raise ValueError(f"output {key}={value!r} cannot be written as one key=value line")
    with path.open("a", encoding="utf-8") as out:
        out.writelines(f"{key}={value}\n" for key, value in values.items())


def cmd_verdict(args: argparse.Namespace) -> int:
    """The gate report logged to a training run: exit 0 only when it is APPROVED."""
    from adapters.mlflow_store import load_gate_report

    report = load_gate_report(_settings(), args.run_id)
    counts = report.counts
    print(
        f"verdict {report.decision}: {report.model_name} v{report.challenger_version} "
        f"(run {args.run_id}): {counts['PASS']} passed, {counts['WARN']} warnings, "
        f"{counts['FAIL']} failed, {counts['SKIP']} skipped"
    )
    for check in report.checks:
        if check.status in ("FAIL", "WARN"):
            print(f"  [{check.status}] {check.gate}: {check.message}")
    return 0 if report.approved else 1


def cmd_package(args: argparse.Namespace) -> int:
    _use_prefect()
    from adapters.bento_store import use_bentoml_home
    from flows.package import package

    use_bentoml_home(_settings())
    result = package(args.model)
    print(
        f"model {result.tag} (version {result.model_version}, run {result.run_id}); bento {result.bento}"
    )
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    _use_prefect()
    from flows.rollback import rollback

    event = rollback(args.reason, args.model)
    print(f"{event.model}: champion v{event.rolled_back} -> v{event.champion} ({event.reason})")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    _use_prefect()
    from adapters.raw_data import world_exists
    from flows.features import features
    from flows.train import train

    settings = _settings()
    if not world_exists(settings.raw_dir) or args.regenerate:
        print("== generating the synthetic churn world")
        cmd_generate(_GENERATE_DEFAULTS)
    print("== features flow")
    result = features()
    manifest = result.manifest
    training, online = manifest.training_set, manifest.online_snapshot
    print("== train flow (train, log, register, gates, promote)")
    run = train()
    from adapters.bento_store import use_bentoml_home
    from flows.package import package

    use_bentoml_home(settings)
    print("== package flow (champion + online snapshot -> Bento model store)")
    packaged = package()
    some_id = json.dumps(_first_online_id(result.path, manifest.entity))
    metrics = "  ".join(f"{k} {v:.3f}" for k, v in run.metrics.items())
    print(
        f"""
== done
feature set   {result.version}
  training    {training.rows:,} rows, {training.positives:,} positive, {training.as_of_count} as-of dates
              ({training.first_as_of} .. {training.last_as_of})
  online      {online.rows:,} entities as of {online.as_of}
  files       {result.path}/
model         {run.model_name} version {run.version} (@challenger), {run.estimator["kind"]}
  MLflow run  {run.run.run_id}
  test        {metrics}
  threshold   {run.decision_threshold:.3f} (decision threshold, chosen on validation data)
  gates       {run.decision}: champion is version {run.promotion.champion}
{run.report}
raw data      {settings.raw_dir}/
features      .venv/bin/churn features list
Data Docs     {settings.data_docs_index}
registry log  {settings.registry_log}   (make rollback REASON=... to roll back)
MLflow UI     make mlflow-ui   (then open http://127.0.0.1:{args.mlflow_port}; store {settings.tracking_uri})
Prefect UI    make up   (then open http://127.0.0.1:{args.port}; make down to stop)
serving       bento {packaged.bento} with {packaged.tag} (model version {packaged.model_version})
  serve       make serve   (BentoML on http://127.0.0.1:{args.serve_port}, Swagger UI at /)
  container   make container-base && make container   (an image built offline; needs a docker daemon)
  try         curl -s -X POST http://127.0.0.1:{args.serve_port}/predict_by_id -H 'content-type: application/json' \\
                   -d '{{"ids": [{some_id}]}}'
monitoring    make monitor   (the last hour of {settings.predictions_dir}; results in {settings.monitoring_dir}/)
  the loop    with make serve running: make simulate   (drifted traffic -> alerts -> retraining -> new model served)
"""
    )
    return 0


def _windows(start: datetime, end: datetime, minutes: int) -> list[tuple[datetime, datetime]]:
    """[start, end) cut into consecutive windows of ``minutes`` (the last one may be shorter)."""
    out, current = [], start
    while current < end:
        out.append((current, min(current + timedelta(minutes=minutes), end)))
        current += timedelta(minutes=minutes)
    return out


def cmd_monitor(args: argparse.Namespace) -> int:
    """One window (default: the last hour), or a backfill of [--start, --end) window by window."""
    _use_prefect()
    from churn.params import MonitorParams
    from flows.monitor import monitor

    given = json.loads(args.params) if args.params else {}
    if args.axis:
        given["time_axis"] = args.axis
    if args.start is None:
        result = monitor(MonitorParams(**given))
        print(json.dumps(dataclasses.asdict(result), indent=2, default=str))
        return 0
    start, end = (
        datetime.fromisoformat(args.start),
        datetime.fromisoformat(args.end or datetime.now().isoformat()),
    )
    for window_start, window_end in _windows(start, end, args.window_minutes):
        _say(monitor(MonitorParams(**given, window_start=window_start, window_end=window_end)))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """A parquet of feature rows to a running service, window by window on its time column; the
    monitor judges each window by that time (as_of); outcomes delivered afterwards mature labels."""
    _use_prefect()
    import httpx

    from churn.params import MonitorParams
    from ops import replay
    from ops.simulate import local_raw_dir, wait_for_log

    settings = _settings()
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    every = timedelta(minutes=args.window_minutes)
    with httpx.Client(base_url=args.url, headers=headers, timeout=120) as client:
        served = _metadata(client, args.url)
        entity, names = served["entity"], list(served["features"])
        frame = replay.load(Path(args.file), entity, names, args.time_column)
        windows = replay.windows(frame, args.time_column, every)
        print(
            f"== {len(frame):,} rows of {args.file} in {len(windows)} windows to {args.url} "
            f"(model version {served['model_version']})"
        )
        for window in windows:
            sent = replay.send(client, window.rows, entity, names, args.time_column)
            print(
                f"== sent {sent:,} rows as of {window.start:%Y-%m-%d %H:%M}..{window.end:%Y-%m-%d %H:%M}"
            )
    judged = [(w.start, w.end) for w in windows] if args.time_column else []
    for delivery in args.deliver or []:
        source, _, folder = delivery.partition("=")
        if not folder:
            raise ValueError(
                f"--deliver {delivery!r}: expected FILE=FOLDER (a folder under CHURN_RAW_DIR)"
            )
        print(
            f"== delivered into the raw data: {replay.deliver(Path(source), local_raw_dir(settings) / folder)}"
        )
    if args.monitor and judged:
        from flows.monitor import monitor

        params = json.loads(args.monitor_params) if args.monitor_params else {}
        wait_for_log(settings)
        print("== the monitor judges each window by its own time (as_of)")
        for start, end in judged:
            _say(
                monitor(
                    MonitorParams(**params, window_start=start, window_end=end, time_axis="as_of")
                )
            )
    return 0


def _metadata(client: Any, url: str) -> dict[str, Any]:
    """The running service's /metadata, or one line saying it is not there."""
    import httpx

    try:
        meta = client.get("/metadata")
    except httpx.HTTPError as exc:
        raise RuntimeError(
            f"no service answers at {url} ({type(exc).__name__}): start it with `make serve` "
            "(in another shell; SERVE_PORT=... for another port)"
        ) from None
    if meta.status_code != 200:
        raise RuntimeError(
            f"{url}/metadata answered {meta.status_code}: is the service up (make serve)? "
            f"{meta.text[:200]}"
        )
    answer: dict[str, Any] = meta.json()
    return answer


def cmd_simulate(args: argparse.Namespace) -> int:
    """Drift -> alert -> retrain -> gated promotion -> new model served, against a running service."""
    _use_prefect()
    import httpx

    from adapters.feature_engine import features_at, load_feature_repo
    from churn.params import MonitorParams, RetrainPolicy
    from flows.monitor import monitor
    from ops import simulate

    settings = _settings()
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    policy = RetrainPolicy(
        breaches=2,
        windows=3,
        min_new_labels=args.min_new_labels,
        cooldown_hours=0,
        in_process=args.deployment is None,
        **({"deployment": args.deployment} if args.deployment else {}),
    )
    with httpx.Client(base_url=args.url, headers=headers, timeout=120) as client:
        served = _metadata(client, args.url)
        repo = load_feature_repo(settings.feature_repo)
        names, entity = list(served["features"]), repo.config.entity
        dates = simulate.drift_dates(settings, args.bursts)
        print(f"== service at {args.url} serves model version {served['model_version']}")
        combined = simulate.combined_world(settings)
        for as_of in dates:
            frame = features_at(settings, repo, combined, as_of)
            start = datetime.now(UTC).replace(tzinfo=None)
            rows = simulate.send_burst(client, frame, entity, names, as_of)
            simulate.wait_for_log(settings)
            end = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=1)
            print(
                f"== traffic: {rows:,} predictions for customers as of {as_of:%Y-%m-%d} (drift period)"
            )
            result = monitor(MonitorParams(window_start=start, window_end=end, retrain=policy))
            _say(result)
        print("== labels: the drift period's outcomes arrive in the raw data")
        simulate.deliver_labels(settings, combined)
        start = datetime.now(UTC).replace(tzinfo=None)
        rows = simulate.send_burst(client, frame, entity, names, dates[-1])
        simulate.wait_for_log(settings)
        end = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=1)
        print(
            f"== traffic: {rows:,} more predictions as of {dates[-1]:%Y-%m-%d}; the monitor now has matured labels"
        )
        result = monitor(MonitorParams(window_start=start, window_end=end, retrain=policy))
        _say(result)
        if result.retrain_run is None:
            print("== retraining did not fire on the last window: see the reasons above")
            return 1
        version = simulate.wait_for_version(client, served["model_version"], args.reload_timeout)
        print(
            f"== the service now answers with model version {version}"
            if version
            else f"== the service still serves version {served['model_version']} (no promotion, or not yet reloaded)"
        )
    print(
        f"monitoring store  {settings.monitoring_db} (tables windows, feature_drift, alerts, retrain_decisions)"
    )
    print(f"reports           {settings.reports_dir}/   alerts: {settings.alerts_log}")
    return 0 if version else 1


def _say(result: MonitorResult) -> None:
    drifted = sorted(((v, k) for k, v in result.psi.items()), reverse=True)[:3]
    labels, auc_roc = result.labels, result.labels.get("auc_roc")
    print(
        f"   monitor {result.window_start:%Y-%m-%d %H:%M:%S}..{result.window_end:%Y-%m-%d %H:%M:%S}: "
        f"{result.count:,} predictions, "
        f"top PSI {', '.join(f'{k} {v:.2f}' for v, k in drifted)}; labels {labels.labelled}"
        + (f", auc_roc {auc_roc:.3f}" if auc_roc is not None else "")
    )
    for event in result.events:
        print(f"   alert {event.event}: {event.rule} = {event.value:.3f} (limit {event.limit:g})")
    fired = result.retrain.fire
    print(
        f"   retraining {'FIRED: ' + str(result.retrain_run) if fired else 'not fired: ' + result.retrain.reason}"
    )


def cmd_serve(args: argparse.Namespace) -> int:
    """`bentoml serve` of the packaged model, stoppable as a whole: in the foreground (Ctrl-C or
    SIGTERM stops the server and every worker) or in the background (`up` / `down`, pid files)."""
    import os
    import signal

    from ops import stack

    settings = _settings()
    directory, name = settings.stack_dir, "serve"
    if args.action == "down":
        print(
            "stopped the service"
            if stack.stop_process(name, directory)
            else "no service was running"
        )
        return 0
    if stack.running(name, directory):
        raise RuntimeError(
            f"the service is already running (pid file {directory / 'serve.pid'}): `make serve-down` first"
        )
    stack.stop_process(name, directory)  # workers a killed server left behind still hold the port
    model = settings.bentoml_home / "models" / settings.model_name / "latest"
    if not model.is_file():
        raise RuntimeError(
            f"no packaged model {settings.model_name!r} under {settings.bentoml_home}: run `make package` "
            "once a model is promoted (`make demo` does both)"
        )
    if not stack.port_free(args.port):
        raise RuntimeError(
            f"port {args.port} on 127.0.0.1 is taken by {stack.holder(args.port)}: stop it, or "
            "pick a free port: make serve SERVE_PORT=<port>"
        )
    url = f"http://127.0.0.1:{args.port}"
    env = {"BENTOML_HOME": str(settings.bentoml_home), "CHURN_HOME": str(settings.home)}
    cmd = stack.serve_command(args.port)
    pid = stack.start_process(name, cmd, env, directory, Path.cwd())
    (directory / f"{name}.port").write_text(str(args.port))
    log = directory / f"{name}.log"
    print(f"starting the service on {url} (log {log})", flush=True)
    try:
        stack.wait_healthy(
            f"{url}/readyz",
            args.timeout,
            log,
            progress=lambda s: print(f"  waiting for {url}/readyz: {s:.0f}s", flush=True),
            pid=pid,
            port=args.port,
        )
    except stack.StackError:
        stack.stop_process(name, directory)
        raise
    stack.record_tree(name, directory)
    print(
        f"serving model {settings.model_name} on {url} (Swagger UI at /); stop with "
        + ("`make serve-down`" if args.action == "up" else "Ctrl-C"),
        flush=True,
    )
    if args.action == "up":
        return 0
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(True))
    with log.open() as follow:
        follow.seek(0, os.SEEK_END)
        while not stopping and stack.running(name, directory):
            line = follow.readline()
            if line:
                print(line, end="", flush=True)
            else:
                time.sleep(0.3)
    stack.stop_process(name, directory)
    print("the service and its workers are stopped")
    return 0


def cmd_container(args: argparse.Namespace) -> int:
    """The service's image, built offline: `base` makes the base and builder images, `build` the
    image of a packaged Bento, tagged v<model version>-<git commit> and latest."""
    from adapters import container
    from adapters.bento_store import bento_model_version
    from churn.settings import ServiceSettings

    settings = _settings()
    if args.action == "base":
        base, builder = container.make_base(
            settings, mirror=args.mirror, wheels=args.wheels, force=args.force
        )
        print(f"base image {base}, builder {builder}")
        return 0
    if args.action == "flows":
        image = container.build_flows_image(settings, wheels=args.wheels)
        print(
            f"image {image.tag}: {image.size_mb:.0f} MB, built in {image.seconds:.0f} s\n"
            f"  try  docker run --rm --read-only --tmpfs /tmp {image.tag} prefect version"
        )
        return 0
    bento = args.bento or f"{ServiceSettings.from_env().service_name}:latest"
    version = bento_model_version(settings, bento)
    tag = container.image_tag(args.repository, version, container.git_commit())
    print(f"building {tag} from bento {bento} (model version {version})", flush=True)
    image = container.containerize(settings, bento, tag)
    container.docker("tag", image.tag, f"{args.repository}:latest")
    print(
        f"image {image.tag} (also {args.repository}:latest): {image.size_mb:.0f} MB, built in "
        f"{image.seconds:.0f} s\n  run  docker run --rm -p 127.0.0.1:3000:3000 -v churn-data:/data "
        f"-e CHURN_API_TOKEN=... {image.tag}"
    )
    return 0


def cmd_flows(args: argparse.Namespace) -> int:
    """The flows on Kubernetes: the generated deployments, the work pool, their registration."""
    from ops import flows_k8s

    if args.action == "generate":
        if args.check:
            current = flows_k8s.DEPLOYMENTS.read_text() == flows_k8s.generated()
            print(f"{flows_k8s.DEPLOYMENTS}: {'current' if current else 'stale'}")
            return 0 if current else 1
        print(f"wrote {flows_k8s.write()}")
        return 0
    if args.env is None:
        raise ValueError(f"churn flows {args.action} needs --env (staging, prod, ...)")
    if args.action == "pool":
        pool = flows_k8s.create_pool(args.env)
        print(f"work pool {pool!r} (kubernetes) uses {flows_k8s.TEMPLATE.name}")
        return 0
    from adapters import container

    tag = args.tag or container.git_commit()
    print(flows_k8s.deploy(args.env, tag))
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    """The deploy flow in-process: the packaged champion's image rolled out to an environment."""
    from flows.deploy import deploy

    line = deploy(args.env, args.bento, args.override)
    print(f"model version {line['model_version']} live in {args.env}: {line['target']}")
    return 0


def cmd_undeploy(args: argparse.Namespace) -> int:
    from adapters import docker_rollout

    folder = docker_rollout.state_dir(_settings().deploy_dir, args.env)
    stopped = docker_rollout.take_down(folder)
    print(f"stopped {', '.join(stopped)}" if stopped else f"nothing of {args.env} was running here")
    return 0


def _first_online_id(feature_set: Path, entity: str) -> object:
    from adapters.feature_sets import ONLINE_SNAPSHOT, read_table

    return read_table(feature_set / ONLINE_SNAPSHOT, entity, columns=[entity])[entity].tolist()[0]


def cmd_stack(args: argparse.Namespace) -> int:
    from ops import stack

    settings = _settings()
    project = Path.cwd()
    if args.action == "up" and args.profile == "prod":
        from ops import prod_stack

        started = time.monotonic()
        env = prod_stack.up(
            settings,
            project,
            port=args.port,
            mlflow_port=args.mlflow_port,
            pg_port=args.pg_port,
            moto_port=args.s3_port,
            timeout=args.timeout,
            say=lambda line: print(line, flush=True),
        )
        print(f"the stack is up in {time.monotonic() - started:.0f}s")
        pg_port = prod_stack.recorded_ports(settings.stack_dir).postgres
        print(f"PostgreSQL      127.0.0.1:{pg_port}  (databases {', '.join(prod_stack.DATABASES)})")
        print(
            f"S3 stand-in     {env['AWS_ENDPOINT_URL']}  (buckets {prod_stack.MLFLOW_BUCKET}, {prod_stack.DATA_BUCKET})"
        )
        print(
            f"MLflow server   {env['CHURN_TRACKING_URI']}  (basic auth: user {env['MLFLOW_TRACKING_USERNAME']})"
        )
        print(f"Prefect server  {env['PREFECT_API_URL'].removesuffix('/api')}  (on PostgreSQL)")
        print(f"process worker  pool {stack.POOL!r}")
        print(f"secrets         {settings.stack_dir / prod_stack.SECRETS_FILE} (0600)")
        print(f"shell setup     source {settings.stack_dir / 'env.sh'}")
    elif args.action == "up":
        args.port, args.mlflow_port = args.port or 4200, args.mlflow_port or 5000
        started = time.monotonic()
        stack.up(
            settings,
            project,
            port=args.port,
            mlflow_port=args.mlflow_port,
            timeout=args.timeout,
            say=lambda line: print(line, flush=True),
        )
        print(f"the stack is up in {time.monotonic() - started:.0f}s")
        print(
            f"Prefect server  http://127.0.0.1:{args.port}  (UI and API; logs in {settings.stack_dir})"
        )
        print(f"process worker  pool {stack.POOL!r}")
        print(
            f"MLflow server   http://127.0.0.1:{args.mlflow_port}  (UI; the same store as {settings.tracking_uri})"
        )
        print(f"shell setup     source {settings.stack_dir / 'env.sh'}")
    elif args.action == "down":
        stopped = stack.down(settings, say=lambda line: print(line, flush=True))
        print("stopped: " + (", ".join(stopped) or "nothing was running"))
    elif args.action == "deploy":
        port = stack.running_port(settings)
        if port is None:
            raise RuntimeError("the local stack is not running: run `make up` first")
        print(stack.deploy(settings, project, port, active=args.active))
    elif args.action == "run":
        return _run_deployment(settings, args)
    else:
        from ops import prod_stack

        parts = prod_stack.status(settings) + stack.status(settings)
        for part in parts:
            print(
                f"{part.title:<15} {'healthy' if part.healthy else 'DOWN':<8} "
                f"{f'pid {part.pid}' if part.pid else '-':<10} "
                f"{f'port {part.port}' if part.port else '-':<10} {part.detail}"
            )
        if not any(part.pid for part in parts):
            print("the stack is not running: `make up` starts it")
        return 0 if all(part.healthy for part in parts) else 1
    return 0


def cmd_screenshots(args: argparse.Namespace) -> int:
    """PNGs of every UI under $CHURN_HOME/screenshots: starts what is not running, plays the
    outcomes the pages show that the home lacks (unless --no-scenario), stops what it started."""
    from ops import screenshots

    started = time.perf_counter()
    shots = screenshots.make(
        _settings(),
        Path.cwd(),
        main,
        _use_prefect,
        screenshots.find_chromium(args.chromium),
        play=args.scenario,
        ports=(args.port, args.mlflow_port, args.serve_port),
    )
    print(
        f"{len(shots)} screenshots in {time.perf_counter() - started:.0f}s: "
        f"{shots[0].path.parent / 'index.html'}"
    )
    return 0


def _run_deployment(settings: Any, args: argparse.Namespace) -> int:
    """`prefect deployment run NAME --watch` against the stack, once the stack, its worker and the
    deployment are there (each missing step is one line naming the make target)."""
    import os
    import urllib.error
    import urllib.request

    from ops import stack

    if not args.deployment or "/" not in args.deployment:
        raise ValueError(
            "churn stack run needs a deployment as FLOW/DEPLOYMENT, e.g. train/train-weekly"
        )
    port = stack.running_port(settings)
    if port is None:
        raise RuntimeError(
            f"the local stack is not running (no Prefect server of {settings.stack_dir}): "
            "`make up` first, then `make deploy`"
        )
    worker = next(p for p in stack.status(settings) if p.name == "prefect-worker")
    if not worker.healthy:
        raise RuntimeError(
            f"the stack's process worker is not online ({worker.detail}): `make down` and `make up`"
        )
    try:
        urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/deployments/name/{args.deployment}", timeout=10
        ).close()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise RuntimeError(
                f"deployment {args.deployment!r} is not registered with the stack's server: "
                "`make deploy` first"
            ) from None
        raise
    command = [
        str(stack.BIN / "prefect"),
        "deployment",
        "run",
        args.deployment,
        "--watch",
        "--watch-timeout",
        str(int(args.watch_timeout)),
    ]
    sys.stdout.flush()
    os.execve(command[0], command, {**os.environ, **stack.prefect_env(settings, port)})


def cmd_mlflow_ui(args: argparse.Namespace) -> int:
    """The MLflow UI on the pipeline's store in the foreground, unless the stack already serves it."""
    import os

    from ops import stack

    settings = _settings()
    url = f"http://127.0.0.1:{args.port}"
    if stack.stack_mlflow_on(settings, args.port):
        print(
            f"the stack's MLflow server already serves this store on {url} (make up): open it there"
        )
        return 0
    if not stack.port_free(args.port):
        raise RuntimeError(
            f"port {args.port} on 127.0.0.1 is taken by {stack.holder(args.port)}: stop it, or "
            "pick a free port: make mlflow-ui MLFLOW_PORT=<port>"
        )
    command = stack.mlflow_command(settings, args.port, ui=True)
    print(f"MLflow UI on {url} over {command[3]} (Ctrl-C stops it)", flush=True)
    os.execv(command[0], command)


def project_version() -> str:
    """The installed distribution's version, else pyproject.toml's: the flows image runs the
    project's sources without installing them."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("churn-mlops")
    except PackageNotFoundError:
        import tomllib

        with (Path(__file__).resolve().parents[1] / "pyproject.toml").open("rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="churn", description="churn-mlops command line")
    parser.add_argument("--version", action="version", version=f"%(prog)s {project_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write the synthetic churn world as parquet")
    gen.add_argument(
        "--customers",
        type=int,
        default=20_000,
        help="customers in the world (default: %(default)s)",
    )
    gen.add_argument(
        "--months", type=int, default=18, help="months of history (default: %(default)s)"
    )
    gen.add_argument(
        "--start",
        default="2025-01-01",
        help="first day of the world, YYYY-MM-DD (default: %(default)s)",
    )
    gen.add_argument(
        "--drift-months",
        type=int,
        default=0,
        help="extra months with a price rise, written to <out>/drift",
    )
    gen.add_argument(
        "--late-fraction",
        type=float,
        default=0.03,
        help="share of rows that arrive 1-10 days late (default: %(default)s)",
    )
    gen.add_argument(
        "--activity",
        type=float,
        default=1.0,
        help="multiplier on every event rate (default: %(default)s)",
    )
    gen.add_argument("--seed", type=int, default=7, help="random seed (default: %(default)s)")
    gen.add_argument("--out", help="output directory (default: CHURN_RAW_DIR)")
    gen.set_defaults(func=cmd_generate)

    feats = sub.add_parser("features", help="feature repo commands").add_subparsers(
        dest="action", required=True
    )
    lst = feats.add_parser(
        "list", help="every feature with its view, dtype, SQL hash and description"
    )
    lst.add_argument("--repo", help="feature repo directory (default: CHURN_FEATURE_REPO)")
    lst.add_argument("--json", action="store_true", help="as JSON instead of a table")
    lst.set_defaults(func=cmd_features_list)
    build = feats.add_parser("build", help="run the features flow in-process")
    build.add_argument(
        "--first-as-of",
        help="first training as-of, ISO date (default: warm-up after the first event)",
    )
    build.add_argument(
        "--last-as-of",
        help="last training as-of (default: the label horizon before the last event)",
    )
    cadence = build.add_mutually_exclusive_group()
    cadence.add_argument(
        "--every-days", type=int, help="days between as-of dates (default: feature_store.yml)"
    )
    cadence.add_argument(
        "--every-months", type=int, help="calendar months between as-of dates, on the 1st"
    )
    build.add_argument(
        "--online-as-of",
        help="as-of of the online snapshot (default: midnight after the last event)",
    )
    build.add_argument(
        "--partitions",
        type=int,
        help="hash partitions of the entity, each its own task and DuckDB connection on "
        "CHURN_TASK_RUNNER (default: pipeline.yml, else 1)",
    )
    build.set_defaults(func=cmd_features_build)

    trn = sub.add_parser("train", help="run the train flow in-process")
    trn.add_argument(
        "--params",
        help='TrainParams as JSON, e.g. \'{"estimator": {"kind": "logistic_regression"}}\'',
    )
    trn.add_argument(
        "--search", action="store_true", help="small hyperparameter search (nested MLflow runs)"
    )
    trn.add_argument(
        "--outputs",
        metavar="FILE",
        help='append run_id=, model_version= and verdict= lines to FILE (e.g. "$GITHUB_OUTPUT")',
    )
    trn.set_defaults(func=cmd_train)

    vrd = sub.add_parser(
        "verdict",
        help="the gate report logged to a training run; exits non-zero unless it is APPROVED",
    )
    vrd.add_argument("--run-id", required=True, help="the MLflow run of the train flow")
    vrd.set_defaults(func=cmd_verdict)

    pkg = sub.add_parser(
        "package", help="run the package flow: @champion into the Bento model store"
    )
    pkg.add_argument(
        "--model", help="registered model (default: CHURN_MODEL_NAME or churn-classifier)"
    )
    pkg.set_defaults(func=cmd_package)

    rbk = sub.add_parser("rollback", help="run the rollback flow: @champion back to @previous")
    rbk.add_argument(
        "--reason", required=True, help="why: recorded on the rolled-back version and in the log"
    )
    rbk.add_argument(
        "--model", help="registered model (default: CHURN_MODEL_NAME or churn-classifier)"
    )
    rbk.set_defaults(func=cmd_rollback)

    repo = sub.add_parser("repo", help="feature repo commands").add_subparsers(
        dest="action", required=True
    )
    chk = repo.add_parser(
        "check",
        help="sources, population, label, every view, the .yml contract and the point-in-time guard on a sample",
    )
    chk.add_argument("--entities", type=int, default=200, help="entities sampled (default: 200)")
    chk.add_argument(
        "--dates", type=int, default=3, help="training as-of dates sampled (default: 3)"
    )
    chk.set_defaults(func=cmd_repo_check)

    srv = sub.add_parser(
        "serve", help="serve the packaged model (foreground, or up / down in the background)"
    )
    srv.add_argument(
        "action",
        nargs="?",
        choices=["fg", "up", "down"],
        default="fg",
        help="fg: in the foreground until Ctrl-C (default); up / down: in the background",
    )
    srv.add_argument(
        "--port", type=int, default=3000, help="the port on 127.0.0.1 (default: %(default)s)"
    )
    srv.add_argument(
        "--timeout",
        type=float,
        default=240,
        help="seconds to wait for /readyz (default: %(default)s)",
    )
    srv.set_defaults(func=cmd_serve)

    ctr = sub.add_parser("container", help="the service's image, built offline")
    ctr.add_argument(
        "action",
        choices=["base", "build", "flows"],
        help="base: make the base image (debootstrap) and its -wheels builder; build: the image of "
        "a Bento; flows: the flows image (deploy/flows/Dockerfile), churn-flows:<git commit>",
    )
    ctr.add_argument("--bento", help="the Bento to containerize (default: <service name>:latest)")
    ctr.add_argument(
        "--repository",
        default="churn-service",
        help="the image repository, a registry prefix included (default: %(default)s)",
    )
    ctr.add_argument("--mirror", help="base: the Debian mirror (default: the one apt uses here)")
    ctr.add_argument(
        "--wheels",
        type=Path,
        help="base/flows: a folder with the wheels of bentos/requirements.txt / requirements.txt "
        "(air-gapped machines)",
    )
    ctr.add_argument(
        "--force", action="store_true", help="base: remake the images even if they exist"
    )
    ctr.set_defaults(func=cmd_container)

    flw = sub.add_parser("flows", help="the flows as Kubernetes Jobs (deploy/prefect)")
    flw.add_argument(
        "action",
        choices=["generate", "pool", "deploy"],
        help="generate: write deploy/prefect/k8s-deployments.yaml from prefect.yaml and the "
        "environments; pool: create ENV's kubernetes work pool with the project's base job "
        "template; deploy: register ENV's deployments",
    )
    flw.add_argument("--env", help="pool/deploy: deploy/environments/<ENV>.yml")
    flw.add_argument(
        "--tag", help="deploy: the flows image's tag (default: this checkout's commit)"
    )
    flw.add_argument(
        "--check", action="store_true", help="generate: only say whether the file is current"
    )
    flw.set_defaults(func=cmd_flows)

    dep = sub.add_parser(
        "deploy", help="run the deploy flow: the packaged champion's image rolled out to ENV"
    )
    dep.add_argument("--env", default="dev", help="deploy/environments/<ENV>.yml (default: dev)")
    dep.add_argument("--bento", help="the Bento to deploy (default: the latest packaged)")
    dep.add_argument(
        "--override", help="why this model version may skip the environment ENV requires"
    )
    dep.set_defaults(func=cmd_deploy)
    und = sub.add_parser(
        "undeploy", help="stop ENV's live container and its nginx endpoint on this docker host"
    )
    und.add_argument("--env", default="dev", help="the environment (default: dev)")
    und.set_defaults(func=cmd_undeploy)

    stk = sub.add_parser(
        "stack", help="the local stack: Prefect server, process worker, MLflow server"
    )
    stk.add_argument(
        "action",
        choices=["up", "down", "deploy", "status", "run"],
        help="up / down: start or stop the stack in the background; status: each part's pid, port "
        "and health (exit 1 unless all are healthy); deploy: register prefect.yaml's deployments; "
        "run: run DEPLOYMENT through the worker and watch it",
    )
    stk.add_argument("deployment", nargs="?", help="run: FLOW/DEPLOYMENT, e.g. train/train-weekly")
    stk.add_argument(
        "--profile",
        choices=["local", "prod"],
        default="local",
        help="up: local (SQLite, files) or prod (PostgreSQL, S3 stand-in, MLflow with auth); "
        "default: %(default)s",
    )
    stk.add_argument(
        "--port",
        type=int,
        default=0,
        help="up: the Prefect server's port (local: 4200; prod: free)",
    )
    stk.add_argument(
        "--mlflow-port",
        type=int,
        default=0,
        help="up: the MLflow server's port (local: 5000; prod: free)",
    )
    stk.add_argument(
        "--pg-port", type=int, default=0, help="up, prod: PostgreSQL's port (default: free)"
    )
    stk.add_argument(
        "--s3-port", type=int, default=0, help="up, prod: the S3 stand-in's port (default: free)"
    )
    stk.add_argument(
        "--timeout",
        type=float,
        default=180,
        help="up: seconds to wait for each part to answer (default: %(default)s)",
    )
    stk.add_argument(
        "--active",
        action="store_true",
        help="deploy: turn the schedules on (default: registered paused)",
    )
    stk.add_argument(
        "--watch-timeout",
        type=float,
        default=1800,
        help="run: seconds to watch the run (default: %(default)s)",
    )
    stk.set_defaults(func=cmd_stack)

    mui = sub.add_parser(
        "mlflow-ui",
        help="the MLflow UI on the pipeline's store (says so when the stack's MLflow serves it)",
    )
    mui.add_argument(
        "--port", type=int, default=5000, help="the port on 127.0.0.1 (default: %(default)s)"
    )
    mui.set_defaults(func=cmd_mlflow_ui)

    exp = sub.add_parser("expectations", help="Great Expectations suites").add_subparsers(
        dest="action", required=True
    )
    gen_exp = exp.add_parser(
        "generate",
        help="(re)generate the suites from the feature repo's metadata, keeping hand-tuned expectations",
    )
    gen_exp.add_argument("--out", help="directory (default: CHURN_EXPECTATIONS_DIR)")
    gen_exp.set_defaults(func=cmd_expectations_generate)

    mon = sub.add_parser("monitor", help="run the monitor flow in-process (default: the last hour)")
    mon.add_argument("--params", help="MonitorParams as JSON, e.g. '{\"window_minutes\": 1440}'")
    mon.add_argument(
        "--axis", choices=["request", "as_of"], help="what windows bound (default: request time)"
    )
    mon.add_argument("--start", help="backfill from this time (ISO 8601, UTC), window by window")
    mon.add_argument("--end", help="backfill up to this time (default: now)")
    mon.add_argument(
        "--window-minutes", type=int, default=60, help="backfill window length (default: 60)"
    )
    mon.set_defaults(func=cmd_monitor)

    rpl = sub.add_parser(
        "replay", help="send a parquet of feature rows to a running service, window by window"
    )
    rpl.add_argument(
        "file", help="parquet with the entity, the service's features and optionally a time column"
    )
    rpl.add_argument(
        "--url", default="http://127.0.0.1:3000", help="the service (default: %(default)s)"
    )
    rpl.add_argument("--token", help="bearer token when the service has CHURN_API_TOKEN")
    rpl.add_argument(
        "--time-column", help="the time each row's features describe: sent as as_of, paces windows"
    )
    rpl.add_argument(
        "--window-minutes", type=int, default=24 * 60, help="window length (default: a day)"
    )
    rpl.add_argument(
        "--deliver",
        action="append",
        metavar="FILE=FOLDER",
        help="after the replay, copy FILE into CHURN_RAW_DIR/FOLDER (outcomes that arrive later, new "
        "source rows); repeatable",
    )
    rpl.add_argument(
        "--monitor", action="store_true", help="then judge every window by its own time (as_of)"
    )
    rpl.add_argument(
        "--monitor-params", help="MonitorParams as JSON for those runs (alerts, retrain policy)"
    )
    rpl.set_defaults(func=cmd_replay)

    sim = sub.add_parser(
        "simulate",
        help="replay drifted traffic to a running service, deliver labels, watch the loop",
    )
    sim.add_argument(
        "--url",
        default="http://127.0.0.1:3000",
        help="the running service (default: %(default)s)",
    )
    sim.add_argument("--token", help="bearer token when the service has CHURN_API_TOKEN")
    sim.add_argument(
        "--bursts",
        type=int,
        default=4,
        help="as-of dates of the drift period replayed, one window each (default: %(default)s)",
    )
    sim.add_argument(
        "--min-new-labels",
        type=int,
        default=500,
        help="matured labels the retrain policy waits for (default: %(default)s)",
    )
    sim.add_argument(
        "--deployment",
        help="trigger this training deployment (needs make up + make deploy) instead of an in-process run",
    )
    sim.add_argument(
        "--reload-timeout",
        type=float,
        default=120,
        help="seconds to wait for the service to serve the new model (default: %(default)s)",
    )
    sim.set_defaults(func=cmd_simulate)

    shots = sub.add_parser(
        "screenshots",
        help="PNGs of every UI (Prefect, MLflow, Swagger, Data Docs) under $CHURN_HOME/screenshots",
    )
    shots.add_argument(
        "--no-scenario",
        dest="scenario",
        action="store_false",
        help="capture only: play none of the missing outcomes (a champion, a rejected challenger, "
        "quiet, alerting and retraining monitor windows); default: play them",
    )
    shots.add_argument(
        "--chromium", help="the Chromium binary (default: chromium on PATH, Debian's package)"
    )
    shots.add_argument(
        "--port", type=int, help="Prefect's port when it starts the stack (default: a free one)"
    )
    shots.add_argument(
        "--mlflow-port",
        type=int,
        help="MLflow's port when it starts the stack (default: a free one)",
    )
    shots.add_argument(
        "--serve-port", type=int, help="the service's port when it starts it (default: a free one)"
    )
    shots.set_defaults(func=cmd_screenshots)

    demo = sub.add_parser("demo", help="generate data if needed and run the pipeline")
    demo.add_argument(
        "--regenerate", action="store_true", help="generate the synthetic world again"
    )
    for flag, port, what in (
        ("--port", 4200, "the Prefect UI's"),
        ("--serve-port", 3000, "the service's"),
        ("--mlflow-port", 5000, "the MLflow UI's"),
    ):
        demo.add_argument(
            flag,
            type=int,
            default=port,
            help=f"{what} port in the printed hints (default: %(default)s)",
        )
    demo.set_defaults(func=cmd_demo)
    return parser


_GENERATE_DEFAULTS = _parser().parse_args(
    ["generate", "--drift-months", "2"]
)  # the drift period feeds `churn simulate`


# commands that run flows: their runs carry the tags cli and cli-<command> in the Prefect UI
RUNS_FLOWS = (
    cmd_deploy,
    cmd_features_build,
    cmd_train,
    cmd_package,
    cmd_rollback,
    cmd_demo,
    cmd_monitor,
    cmd_replay,
    cmd_simulate,
)


# what a command needs before it starts Prefect: a missing step is one line, at once
PREFLIGHT = {
    cmd_package: _check_package,
    cmd_monitor: _check_monitor,
    cmd_simulate: _check_world,
    cmd_replay: _check_service,
}


def _run(args: argparse.Namespace) -> int:
    if args.func not in RUNS_FLOWS:
        return int(args.func(args))
    if args.func in PREFLIGHT:
        PREFLIGHT[args.func](args)
    _use_prefect()
    from prefect import tags

    with tags("cli", f"cli-{args.command}"):
        return int(args.func(args))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, RuntimeError, LookupError, FileNotFoundError, ConnectionError) as exc:
        print(f"error: {explain(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
