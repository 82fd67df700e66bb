"""Every rollout, per environment, appended to ``$CHURN_HOME/deploy/rollouts.jsonl``: what was
rolled out where, whether it went live, and why not. Promotion into an environment that requires
another reads which model versions that one has served from here."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def record(deploy_dir: Path, **entry: Any) -> dict[str, Any]:
    deploy_dir.mkdir(parents=True, exist_ok=True)
    line = {"at": datetime.now(UTC).isoformat(timespec="seconds"), **entry}
    with (deploy_dir / "rollouts.jsonl").open("a") as log:
        log.write(json.dumps(line) + "\n")
    return line


def served(deploy_dir: Path) -> dict[str, set[str]]:
    """The model versions each environment went live with."""
    path = deploy_dir / "rollouts.jsonl"
    out: dict[str, set[str]] = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        entry = json.loads(line)
        if entry.get("status") == "live":
            out.setdefault(entry["environment"], set()).add(str(entry["model_version"]))
    return out
