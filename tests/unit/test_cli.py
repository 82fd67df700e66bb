"""The command line's own logic: one line for a Prefect start-up failure, naming the cause."""

from __future__ import annotations

from ops.cli import explain

STARTUP_FAILURE = (
    "Timed out while attempting to connect to ephemeral Prefect API server. Ephemeral server process exited "
    'with code 1. stdout:  stderr: Traceback (most recent call last):\n  File "x.py", line 1\n'
    "sqlite3.OperationalError: unable to open database file\n"
)


def test_a_prefect_startup_failure_says_why_in_one_line(monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", "/nowhere/prefect")
    line = explain(RuntimeError(STARTUP_FAILURE))
    assert line.startswith(
        "Prefect's temporary API server did not start (it exited with code 1): "
        "sqlite3.OperationalError: unable to open database file; PREFECT_HOME is /nowhere/prefect."
    )
    assert "`make up`" in line and "\n" not in line


def test_other_errors_pass_through():
    assert explain(ValueError("feature_store.yml: invalid")) == "feature_store.yml: invalid"


def test_a_backfill_is_cut_into_consecutive_windows():
    from datetime import datetime

    from ops.cli import _windows

    cut = _windows(datetime(2025, 1, 1), datetime(2025, 1, 1, 2, 30), 60)
    assert cut == [
        (datetime(2025, 1, 1, 0), datetime(2025, 1, 1, 1)),
        (datetime(2025, 1, 1, 1), datetime(2025, 1, 1, 2)),
        (datetime(2025, 1, 1, 2), datetime(2025, 1, 1, 2, 30)),
    ]


def test_train_outputs_are_appended_as_github_output_lines(tmp_path):
    import pytest

    from ops.cli import append_outputs

    outputs = tmp_path / "github_output"
    outputs.write_text("earlier=step\n")
    append_outputs(outputs, {"run_id": "0f3a", "model_version": "7", "verdict": "APPROVED"})
    assert outputs.read_text().splitlines() == [
        "earlier=step",
        "run_id=0f3a",
        "model_version=7",
        "verdict=APPROVED",
    ]
    with pytest.raises(ValueError, match="cannot be written as one key=value line"):
        append_outputs(outputs, {"verdict": "APPROVED\nrun_id=forged"})
    assert outputs.read_text().count("\n") == 4  # nothing of the refused values was written


def _commands(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*prefix, name))
    yield prefix, parser


def test_every_option_says_what_it_does_and_its_default():
    import argparse

    from ops.cli import _parser

    missing = []
    for command, parser in _commands(_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                continue
            name = " ".join((*command, action.dest))
            if not action.help:
                missing.append(f"{name}: no help")
            elif (
                action.default not in (None, False, argparse.SUPPRESS)
                and "default" not in action.help
            ):
                missing.append(f"{name}: default {action.default!r} not shown")
    assert not missing, missing


def test_version_is_the_package_version(capsys):
    from importlib.metadata import version

    import pytest

    from ops.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"churn {version('churn-mlops')}"


def test_version_comes_from_pyproject_where_the_project_is_not_installed(monkeypatch):
    """The flows image runs the sources uninstalled: its `churn --version` must still answer."""
    import importlib.metadata
    import tomllib

    from ops.cli import project_version

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    with open("pyproject.toml", "rb") as handle:
        assert project_version() == tomllib.load(handle)["project"]["version"]
