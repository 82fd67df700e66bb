"""``make screenshots``: every UI of the pipeline as a reviewer sees it, as PNGs under
``$CHURN_HOME/screenshots/``, taken with headless Chromium (Debian's ``chromium``) against the
running stack.

``make`` starts what is not running (the local stack and the service, on free loopback ports, and
stops them afterwards), then ``scenario`` plays, through the ``churn`` commands, each outcome the
pages show that the home does not hold yet: a champion (``churn demo``), the deployments and their
automation (``churn stack deploy``), a rejected challenger (``churn train`` of a one-split model),
a quiet monitor window (``churn replay`` of the online snapshot, then ``churn monitor`` of the
minutes it took) and alerting and retraining windows (``churn simulate``, minutes later).

Each page (``pages``) is then loaded in one headless Chromium driven over its DevTools protocol,
waited for until it shows the texts (and meets the condition) that prove it rendered what it
claims, tidied, captured, and refused when the PNG is nearly one colour; a timeout names what is
still missing. (Chromium's own ``--screenshot`` with ``--virtual-time-budget`` captured Prefect's
run list before its runs had loaded, and cannot close MLflow's assistant panel.) Requests a page
made to any host but this machine are reported: the UIs are served by our own servers or from
files, and BentoML's default service description is the one exception.
"""

from __future__ import annotations

import base64
import html
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from churn.settings import Settings
from ops import stack

WIDTH, HEIGHT = 1600, 1000
STACK_TIMEOUT = 420
"""Seconds for each server (Prefect, MLflow, the service) to answer: on 2 busy cores (load 12)
Prefect took 171 s, where `churn stack up` waits 180."""
MIN_COLOURS = 16
"""A PNG with this many distinct colours or fewer is blank (a rendered UI has hundreds)."""
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    f"--window-size={WIDTH},{HEIGHT}",
    "--remote-debugging-port=0",  # Chromium picks a free port and writes it to DevToolsActivePort
)
WEAK_CHALLENGER = {
    "estimator": {"kind": "hist_gradient_boosting", "max_iter": 1, "max_leaf_nodes": 2}
}
"""``churn train --params`` of a one-split model: the performance and regression gates reject it."""
INSTALL_HINT = (
    "install Debian's chromium (as root: `apt-get install -y chromium`; "
    "make screenshots does it when run as root)"
)


class ScreenshotError(RuntimeError):
    """A page could not be captured, or the scenario could not produce what a page shows."""


@dataclass(frozen=True)
class Page:
    name: str
    """The PNG's file stem."""
    what: str
    """What the picture shows, for the index and the README."""
    url: str
    expect: tuple[str, ...]
    """Texts the rendered page must show before it is captured."""
    height: int = HEIGHT
    tidy: str | None = None
    """JavaScript run once the page is ready (e.g. closing a panel that hides the content)."""
    after: tuple[str, ...] = ()
    """Texts the page must show once ``tidy`` ran."""
    ready: str | None = None
    """A JavaScript condition that must hold too (e.g. charts drawn: their legends show first)."""


@dataclass
class Shot:
    page: Page
    path: Path
    seconds: float
    colours: int
    external: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- the stack's APIs


def _request(url: str, body: Any = None, timeout: float = 30) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        headers={"Content-Type": "application/json"},
        method="POST" if data else "GET",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


class PrefectApi:
    """The few reads of the Prefect server the scenario and the pages need (plain HTTP, no Prefect import)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def runs(self, flow: str, state_names: list[str], limit: int = 1) -> list[dict[str, Any]]:
        """The newest runs of ``flow`` whose state has one of ``state_names``."""
        body = {
            "flows": {"name": {"any_": [flow]}},
            "flow_runs": {"state": {"name": {"any_": state_names}}},
            "sort": "START_TIME_DESC",
            "limit": limit,
        }
        found: list[dict[str, Any]] = _request(f"{self.url}/api/flow_runs/filter", body)
        return found

    def flow_ids(self, names: list[str]) -> list[str]:
        flows = _request(f"{self.url}/api/flows/filter", {"flows": {"name": {"any_": names}}})
        return [f["id"] for f in flows]

    def artifact(self, flow_run_id: str, key: str) -> str:
        """The id of the artifact ``key`` of a flow run (its newest)."""
        body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}, "key": {"any_": [key]}}}
        found = _request(f"{self.url}/api/artifacts/filter", {**body, "sort": "CREATED_DESC"})
        if not found:
            raise ScreenshotError(f"flow run {flow_run_id} has no artifact {key!r}")
        return str(found[0]["id"])

    def automations(self) -> list[str]:
        return [a["name"] for a in _request(f"{self.url}/api/automations/filter", {})]


def automation_names(project_dir: Path) -> list[str]:
    """The automations ``prefect deploy`` makes from prefect.yaml's deployment triggers."""
    import yaml

    config = yaml.safe_load((project_dir / "prefect.yaml").read_text())
    return [
        t["name"] for d in config["deployments"] for t in d.get("triggers") or [] if "name" in t
    ]


# ---------------------------------------------------------------- the scenario


@dataclass
class Urls:
    prefect: str
    mlflow: str
    service: str


def _step(what: str, run: Callable[[], object]) -> float:
    print(f"== screenshots: {what}", flush=True)
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    print(f"== screenshots: {what}: {seconds:.0f}s", flush=True)
    return seconds


def _churn(churn: Callable[[list[str]], int], *argv: str) -> Callable[[], None]:
    def run() -> None:
        if churn(list(argv)) != 0:
            raise ScreenshotError(f"`churn {' '.join(argv[:2])}` failed (its message is above)")

    return run


def scenario(
    settings: Settings,
    project_dir: Path,
    churn: Callable[[list[str]], int],
    prefect: PrefectApi,
    service_url: Callable[[], str],
) -> dict[str, float]:
    """Play each step whose outcome the home does not show yet; the seconds of each step played.

    ``service_url`` starts the service when it is not running (after a model is packaged)."""
    timings: dict[str, float] = {}
    model = settings.bentoml_home / "models" / settings.model_name / "latest"
    if not model.is_file():
        timings["demo"] = _step("a champion, packaged (churn demo)", _churn(churn, "demo"))
    if not set(automation_names(project_dir)) <= set(prefect.automations()):
        timings["deploy"] = _step(
            "the deployments and their automation (churn stack deploy)",
            _churn(churn, "stack", "deploy"),
        )
    if not prefect.runs("train", ["Rejected"]):
        timings["rejected train"] = _step(
            "a rejected challenger (churn train of a one-split model)",
            _churn(churn, "train", "--params", json.dumps(WEAK_CHALLENGER)),
        )
    url = service_url()
    if not prefect.runs("monitor", ["Completed"]):
        from adapters.feature_sets import ONLINE_SNAPSHOT, latest

        snapshot = latest(settings.features_dir).path / ONLINE_SNAPSHOT
        start = datetime.now(UTC).replace(tzinfo=None)

        def quiet() -> None:
            _churn(churn, "replay", str(snapshot), "--url", url)()
            end = datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=1)
            window = str(int((end - start).total_seconds() // 60) + 1)
            _churn(
                churn,
                "monitor",
                "--start",
                start.isoformat(),
                "--end",
                end.isoformat(),
                "--window-minutes",
                window,
            )()

        timings["quiet monitor"] = _step(
            "a quiet monitor window (churn replay of the online snapshot, churn monitor)", quiet
        )
    if not prefect.runs("monitor", ["Alerting"]):
        timings["simulate"] = _step(
            "alerting and retraining windows (churn simulate)",
            _churn(churn, "simulate", "--url", url),
        )
    return timings


# ---------------------------------------------------------------- the pages


MLFLOW_ASSISTANT_CLOSE = (
    "document.querySelector('[data-component-id=\"mlflow.assistant.chat_panel.close\"]')?.click()"
)
"""MLflow 3.17 opens its assistant panel over a third of the page on a first visit from localhost."""
MLFLOW_CHARTS_DRAWN = "document.querySelectorAll('.js-plotly-plot .trace').length >= 6"
"""The Chart view draws its cards' titles and legends seconds before their plots (lazily, those in
view): wait for the first two rows of lines."""


SWAGGER_OPEN_PREDICT = (
    "[...document.querySelectorAll('.opblock-summary-path')]"
    ".find(e => e.textContent.trim() === '/predict')?.click()"
)
"""Swagger UI lists the operations collapsed: open /predict to show its request example."""


def pages(settings: Settings, project_dir: Path, urls: Urls, prefect: PrefectApi) -> list[Page]:
    """What to capture, with the texts that prove each page shows it."""
    from adapters import mlflow_store

    rejected = prefect.runs("train", ["Rejected"])
    if not rejected:
        raise ScreenshotError(
            "no rejected train run on the Prefect server: run without --no-scenario"
        )
    flows = "&".join(f"flow={i}" for i in prefect.flow_ids(["train", "monitor"]))
    mlflow_port = int(urls.mlflow.rsplit(":", 1)[1])
    docs = settings.data_docs_index
    if not docs.is_file():
        raise ScreenshotError(f"no Data Docs at {docs}: run the features flow (churn demo) first")
    return [
        Page(
            "1-prefect-runs",
            "Prefect UI, flow runs of train and monitor: the rejected challenger (state Rejected, tag "
            "rejected) and the alerting and retraining monitor windows (Alerting, Retraining) beside "
            "quiet Completed ones",
            f"{urls.prefect}/runs?{flows}",
            ("Rejected", "Alerting", "Retraining", "Completed"),
            height=1700,
        ),
        Page(
            "2-prefect-train-run",
            "Prefect UI, the rejected train run: state Rejected with the failed gates as its message, "
            "its tags, task runs and artifacts",
            f"{urls.prefect}/runs/flow-run/{rejected[0]['id']}",
            ("Rejected", "REJECTED", rejected[0]["name"]),
        ),
        Page(
            "3-prefect-validation-report",
            "Prefect UI, the rejected run's validation-report artifact: every gate with its value "
            "and limit, the failed ones first, beside the run's state message and tags",
            f"{urls.prefect}/artifacts/artifact/{prefect.artifact(rejected[0]['id'], 'validation-report')}",
            ("REJECTED", "FAIL", "regression"),
        ),
        Page(
            "4-prefect-automations",
            "Prefect UI, Automations: the trigger prefect.yaml declares on train-weekly, "
            "registered by `churn stack deploy`",
            f"{urls.prefect}/automations",
            tuple(automation_names(project_dir)),
        ),
        Page(
            "5-mlflow-registered-model",
            "MLflow UI, the registered model: its description, versions with their tags "
            "(gates.decision) and aliases @champion, @previous, @challenger",
            f"{urls.mlflow}/#/models/{settings.model_name}",
            (settings.model_name, "Description", "champion", "challenger"),
            tidy=MLFLOW_ASSISTANT_CLOSE,
        ),
        Page(
            "6-mlflow-monitoring-trends",
            "MLflow UI, the churn-monitoring experiment's Chart view: every window's metrics as "
            "lines over time on the trend-champion-v<N> runs",
            mlflow_store.monitoring_ui_url(settings, mlflow_port),
            ("trend-champion-v", "drifted_share"),
            height=1400,
            tidy=MLFLOW_ASSISTANT_CLOSE,
            ready=MLFLOW_CHARTS_DRAWN,
        ),
        Page(
            "7-bentoml-swagger",
            "BentoML's Swagger UI at / of the service: its endpoints, /predict opened on the "
            "request example the OpenAPI document gives",
            f"{urls.service}/",
            ("/predict", "/predict_batch", "/predict_by_id"),
            height=1500,
            tidy=SWAGGER_OPEN_PREDICT,
            after=("Request body", "Example Value"),
        ),
        Page(
            "8-gx-data-docs",
            "Great Expectations Data Docs index, opened offline from the file system",
            docs.as_uri(),
            ("Validation Results", "passed", "training_set"),
        ),
    ]


# ---------------------------------------------------------------- Chromium


def find_chromium(given: str | None = None) -> str:
    for name in [given] if given else ["chromium", "chromium-browser"]:
        found = shutil.which(name) if name else None
        if found:
            return found
    raise ScreenshotError(f"no {given or 'chromium'} on PATH: {INSTALL_HINT}")


class DevTools:
    """The Chrome DevTools protocol over one websocket: a call waits for its answer; events are kept."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.last_id = 0
        self.events: list[dict[str, Any]] = []

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 60,
    ) -> dict[str, Any]:
        self.last_id += 1
        message: dict[str, Any] = {"id": self.last_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.socket.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                reply = json.loads(self.socket.recv(timeout=left))
            except TimeoutError:
                break
            if reply.get("id") == self.last_id:
                if "error" in reply:
                    raise ScreenshotError(f"Chromium: {method}: {reply['error'].get('message')}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self.events.append(reply)
        raise ScreenshotError(f"Chromium did not answer {method} within {timeout:.0f}s")


@contextmanager
def chromium(binary: str, log: Path) -> Iterator[DevTools]:
    """One headless Chromium with a fresh profile, stopped (by its pid) and removed afterwards."""
    from websockets.sync.client import connect

    profile = Path(tempfile.mkdtemp(prefix="churn-chromium-"))
    with log.open("ab") as out:
        process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (active.is_file() and len(active.read_text().splitlines()) >= 2):
            if process.poll() is not None or time.monotonic() > deadline:
                raise ScreenshotError(f"Chromium did not start (exit {process.poll()}); see {log}")
            time.sleep(0.2)
        port, path = active.read_text().splitlines()[:2]
        with connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=30) as socket:
            yield DevTools(socket)
    finally:
        _stop(process)
        shutil.rmtree(profile, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Chromium and its helper processes: the process group it leads (it was started in its own)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            continue


LOCAL = ("http://127.0.0.1", "file://", "data:", "blob:", "about:", "chrome", "devtools:")


def capture(devtools: DevTools, page: Page, out: Path, timeout: float = 120) -> Shot:
    """Load ``page`` in a new tab, wait until it shows every expected text, tidy, capture."""
    started = time.perf_counter()
    target = devtools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = devtools.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
        "sessionId"
    ]
    try:
        devtools.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": page.height, "deviceScaleFactor": 1, "mobile": False},
            session,
        )
        devtools.call("Network.enable", {}, session)
        devtools.events.clear()
        devtools.call("Page.navigate", {"url": page.url}, session)
        wait_for(devtools, session, page, page.expect, timeout, page.ready)
        if page.tidy:
            devtools.call("Runtime.evaluate", {"expression": page.tidy}, session)
            wait_for(devtools, session, page, page.after, timeout)
        time.sleep(2)  # charts animate in, fonts settle
        shot = devtools.call("Page.captureScreenshot", {"format": "png"}, session)
        out.write_bytes(base64.b64decode(shot["data"]))
        external = sorted(
            {
                e["params"]["request"]["url"].split("?")[0]
                for e in devtools.events
                if e.get("method") == "Network.requestWillBeSent"
                and e.get("sessionId") == session
                and not e["params"]["request"]["url"].startswith(LOCAL)
            }
        )
    finally:
        devtools.call("Target.closeTarget", {"targetId": target})
    colours = count_colours(out)
    if colours <= MIN_COLOURS:
        raise ScreenshotError(f"{out} is blank ({colours} colours): {page.url} rendered nothing")
    return Shot(page, out, time.perf_counter() - started, colours, external)


def wait_for(
    devtools: DevTools,
    session: str,
    page: Page,
    texts: tuple[str, ...],
    timeout: float,
    ready: str | None = None,
) -> None:
    """Until the page's rendered text (``innerText``: what is laid out, not hidden) has every text,
    and ``ready`` holds."""
    probe = (
        f"{json.dumps(list(texts))}"
        ".filter(t => !(document.body && document.body.innerText.includes(t)))"
        + (f".concat(({ready}) ? [] : [{json.dumps(ready)}])" if ready else "")
    )
    deadline = time.monotonic() + timeout
    while True:
        value = devtools.call(
            "Runtime.evaluate", {"expression": probe, "returnByValue": True}, session
        )
        missing = value.get("result", {}).get("value", list(texts))
        if not missing:
            return
        if time.monotonic() > deadline:
            raise ScreenshotError(
                f"{page.name}: {page.url} did not show {missing} within {timeout:.0f}s"
            )
        time.sleep(0.5)


def count_colours(path: Path, most: int = 100_000) -> int:
    from PIL import Image

    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=most)
    return most if colours is None else len(colours)


def write_index(out_dir: Path, shots: list[Shot]) -> Path:
    """An HTML page with every screenshot and what it shows (no external resources)."""
    items = "\n".join(
        f"<h2>{html.escape(s.path.name)}</h2><p>{html.escape(s.page.what)}<br><code>"
        f"{html.escape(s.page.url)}</code>"
        + (
            f"<br>requests to other hosts, broken offline: {html.escape(', '.join(s.external))}"
            if s.external
            else ""
        )
        + f'</p><img src="{html.escape(s.path.name)}" width="100%">'
        for s in shots
    )
    index = out_dir / "index.html"
    index.write_text(
        '<!doctype html><meta charset="utf-8"><title>churn-mlops screenshots</title>'
        f'<body style="font-family: sans-serif; max-width: 1600px"><h1>churn-mlops screenshots</h1>'
        f"<p>made by <code>make screenshots</code>, {time.strftime('%Y-%m-%d %H:%M %Z')}</p>\n{items}\n"
    )
    return index


def take(settings: Settings, project_dir: Path, urls: Urls, binary: str) -> list[Shot]:
    """Every page captured into ``settings.screenshots_dir``."""
    out_dir = settings.screenshots_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    prefect = PrefectApi(urls.prefect)
    shots = []
    with chromium(binary, out_dir / "chromium.log") as devtools:
        for page in pages(settings, project_dir, urls, prefect):
            shot = capture(devtools, page, out_dir / f"{page.name}.png")
            print(
                f"{shot.path}  {shot.seconds:4.1f}s  {shot.colours:>6} colours"
                + (f"  EXTERNAL REQUESTS: {', '.join(shot.external)}" if shot.external else ""),
                flush=True,
            )
            shots.append(shot)
    write_index(out_dir, shots)
    return shots


# ---------------------------------------------------------------- the whole run


def make(
    settings: Settings,
    project_dir: Path,
    churn: Callable[[list[str]], int],
    use_prefect: Callable[[], None],
    binary: str,
    play: bool = True,
    ports: tuple[int | None, int | None, int | None] = (None, None, None),
) -> list[Shot]:
    """Start what is not running, play the missing outcomes, capture every page, stop what was started."""
    started: list[str] = []
    prefect_port, mlflow_port, serve_port = ports
    directory = settings.stack_dir
    try:
        port = stack.running_port(settings)
        if port is None:
            port = prefect_port or stack.free_port()
            mlflow_port = mlflow_port or stack.free_port()
            started.append("stack")
            _step(
                f"the local stack (Prefect on {port}, MLflow on {mlflow_port})",
                lambda: stack.up(
                    settings, project_dir, port=port, mlflow_port=mlflow_port, timeout=STACK_TIMEOUT
                ),
            )
        else:
            mlflow_port = stack.live_port("mlflow-server", directory)
            if mlflow_port is None:
                raise ScreenshotError(
                    "the running stack recorded no MLflow port: `make down` and run again"
                )
        use_prefect()  # flows run in this process report to the stack's server
        prefect = PrefectApi(f"http://127.0.0.1:{port}")

        def service_url() -> str:
            if not stack.running("serve", directory):
                serve = serve_port or stack.free_port()
                started.append("serve")
                _churn(
                    churn, "serve", "up", "--port", str(serve), "--timeout", str(STACK_TIMEOUT)
                )()
            recorded = stack.live_port("serve", directory)
            if recorded is None:
                raise ScreenshotError(
                    "the running service recorded no port: `make serve-down` and run again"
                )
            return f"http://127.0.0.1:{recorded}"

        if play:
            from prefect import tags

            with tags("cli", "cli-screenshots"):
                scenario(settings, project_dir, churn, prefect, service_url)
        urls = Urls(prefect.url, f"http://127.0.0.1:{mlflow_port}", service_url())
        return take(settings, project_dir, urls, binary)
    finally:
        if "serve" in started:
            stack.stop_process("serve", directory)
        if "stack" in started:
            stack.down(settings)
