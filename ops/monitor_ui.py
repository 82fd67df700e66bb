"""``make monitor-ui``: the monitoring trends in the MLflow UI.

Prints the URL of the ``churn-monitoring`` experiment's Chart view (every window's metrics as lines
over time, one trend run per champion version), then serves the MLflow UI on the pipeline's store
in the foreground until Ctrl-C. When the stack's own MLflow server (``make up``) serves the store on
that port, it only prints the URL; another process on the port is an error.

    .venv/bin/python -m ops.monitor_ui [--port 5000]
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="monitor-ui", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port", type=int, default=5000, help="the MLflow UI's port (default: %(default)s)"
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
    if stack.stack_mlflow_on(settings, args.port):
        print(
            f"the stack's MLflow server serves this store on 127.0.0.1:{args.port}: open the URL above"
        )
        return 0
    if not stack.port_free(args.port):
        print(
            f"error: port {args.port} on 127.0.0.1 is taken by {stack.holder(args.port)}: stop it, "
            "or pick a free port: make monitor-ui MLFLOW_PORT=<port>",
            file=sys.stderr,
        )
        return 2
    if not settings.tracking_uri.startswith("sqlite:"):
        print(f"the tracking store is {settings.tracking_uri}: open its UI at the same path")
        return 0
    command = stack.mlflow_command(settings, args.port, ui=True)
    sys.stdout.flush()
    os.execv(command[0], command)  # the UI in the foreground, Ctrl-C stops it


if __name__ == "__main__":
    raise SystemExit(main())
