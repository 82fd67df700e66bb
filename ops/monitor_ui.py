"""``make monitor-ui``: the monitoring trends in the MLflow UI.

Prints the URL of the ``churn-monitoring`` experiment's Chart view (every window's metrics as lines
over time, one trend run per champion version), then serves the MLflow UI on the pipeline's store
in the foreground until Ctrl-C. When the port already answers as an MLflow server (``make up``
started one), it only prints the URL.

    .venv/bin/python -m ops.monitor_ui [--port 5000]
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.request


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="monitor-ui", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port", type=int, default=5000, help="the MLflow UI's port (default 5000)"
    )
    args = parser.parse_args(argv)
    print("finding the churn-monitoring experiment in the tracking store...", flush=True)

    from adapters import mlflow_store
    from churn.settings import Settings
    from ops import stack

    settings = Settings.from_env()
    url = mlflow_store.monitoring_ui_url(settings, args.port)
    print(f"monitoring trends: {url}")
    print(
        "  trend-champion-v<N> runs hold a point per window (x-axis Step or Time); the window runs "
        "nest under them with their Evidently reports (Artifacts)"
    )
    if _answers(f"http://127.0.0.1:{args.port}/health"):
        print(f"an MLflow server already answers on 127.0.0.1:{args.port}: open the URL above")
        return 0
    if not stack.port_free(args.port):
        print(
            f"port {args.port} is taken by something else: make monitor-ui MLFLOW_PORT=<free port>"
        )
        return 2
    if not settings.tracking_uri.startswith("sqlite:"):
        print(f"the tracking store is {settings.tracking_uri}: open its UI at the same path")
        return 0
    command = [
        str(stack.BIN / "mlflow"),
        "ui",
        "--backend-store-uri",
        settings.tracking_uri,
        "--artifacts-destination",
        str(settings.mlartifacts_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
        "--workers",
        "1",
    ]
    sys.stdout.flush()
    os.execv(command[0], command)  # the UI in the foreground, Ctrl-C stops it


if __name__ == "__main__":
    raise SystemExit(main())
