"""Command-line tools run as subprocesses (docker, bentoml, prefect): a failure raises the caller's
error naming the command, with the tail of what the tool printed."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

TAIL = 3000
"""Characters of stdout and of stderr kept in an error: enough for a traceback's end."""


def run_tool(
    cmd: Sequence[str],
    error: type[Exception],
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
) -> str:
    """Run ``cmd`` with ``env`` over this process's environment; its stdout, or ``error`` with the
    command's first words and the tail of its output when it exits non-zero."""
    done = subprocess.run(
        list(cmd),
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        name = " ".join([Path(cmd[0]).name, *cmd[1:3]])
        raise error(f"{name} failed:\n{done.stdout[-TAIL:]}\n{done.stderr[-TAIL:]}".rstrip())
    return done.stdout
