"""The command line as a new user runs it: a fresh CHURN_HOME nobody created, no Prefect server."""

from __future__ import annotations

import json
import os
import subprocess

from ops import stack
from tests.helpers import ROOT


def test_features_build_on_a_home_that_does_not_exist_yet(small_world, tmp_path):
    home = tmp_path / "not" / "yet" / "home"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")
    }  # no server: Prefect's own
    env |= {
        "CHURN_HOME": str(home),
        "CHURN_RAW_DIR": str(small_world),
        "CHURN_DUCKDB_MEMORY_LIMIT": "1GB",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    built = subprocess.run(
        [str(stack.BIN / "churn"), "features", "build"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    printed = json.loads(
        built.stdout[built.stdout.rindex('{\n  "version"') :]
    )  # the command's last output
    assert (home / "features" / "runs" / printed["version"]).is_dir()
    assert (home / "prefect").is_dir()  # Prefect's state lives in the home, created for it
