"""Great Expectations 1.x: load the suites in expectations/, validate DataFrames, build Data Docs.

Suites are JSON files under ``CHURN_EXPECTATIONS_DIR`` (default ``./expectations``), named
``<suite>.json``. A suite missing there is generated from the feature repo's metadata in memory (so a
bring-your-own-data repo is validated before anyone writes suites for it); a suite whose metadata
changed since it was generated is an error until ``churn expectations generate`` is run.
Validation runs in a file-backed GX context under ``$CHURN_HOME/gx`` so every run updates the Data Docs.
No Prefect here: the tasks log the outcomes and publish failures as artifacts.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from churn import expectations
from churn.featurestore import FeatureRepo
from churn.settings import Settings


class DataValidationError(RuntimeError):
    """Data failed its expectation suites; the message lists every failing expectation."""

    def __init__(self, failed: list[ValidationOutcome]):
        docs = failed[0].docs
        super().__init__("\n".join(o.summary() for o in failed) + f"\nData Docs: {docs}")
        self.failed = failed


class StaleSuiteError(RuntimeError):
    """A committed suite no longer matches the metadata it was generated from."""


@dataclass
class ValidationOutcome:
    suite: str
    success: bool
    evaluated: int
    failures: list[dict] = field(default_factory=list)
    docs: str | None = None

    def summary(self) -> str:
        head = f"suite {self.suite!r}: {self.evaluated - len(self.failures)}/{self.evaluated} expectations passed"
        lines = [head] + [
            f"  - {f['expectation']}"
            + (f" on {f['column']!r}" if f["column"] else "")
            + (f": {f['unexpected_count']} unexpected" if f["unexpected_count"] is not None else "")
            + (f", e.g. {f['examples']}" if f["examples"] else "")
            + (f" (observed {f['observed']})" if f["observed"] is not None else "")
            for f in self.failures
        ]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        def cell(value: Any) -> str:
            return "" if value is None else str(value)

        rows = "\n".join(
            f"| {f['expectation']} | {cell(f['column'])} | {cell(f['unexpected_count'])} "
            f"| {', '.join(map(str, f['examples']))} | {cell(f['observed'])} |"
            for f in self.failures
        )
        return (
            f"# Data validation failed: `{self.suite}`\n\n"
            f"{len(self.failures)} of {self.evaluated} expectations failed. Data Docs: `{self.docs}`\n\n"
            "| expectation | column | unexpected | examples | observed |\n|---|---|---|---|---|\n"
            + rows
            + "\n"
        )

    @property
    def artifact_key(self) -> str:
        return f"validation-{self.suite.replace('.', '-').replace('_', '-')}"


def suite_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.json"


def load_suites(repo: FeatureRepo, directory: Path) -> tuple[dict[str, dict], list[str]]:
    """The suite for every source, the training set and the online snapshot; and which were generated now."""
    suites, generated_now = {}, []
    for name, generated in expectations.generated_suites(repo).items():
        path = suite_path(directory, name)
        if not path.is_file():
            suites[name] = generated
            generated_now.append(name)
            continue
        suite = json.loads(path.read_text())
        if expectations.stale(suite, generated):
            raise StaleSuiteError(
                f"{path}: generated from other metadata than {repo.root} has now; "
                "run `churn expectations generate` and review the diff"
            )
        suites[name] = suite
    return suites, generated_now


def validation_stamp(suite: dict, table: Path) -> str:
    """Identifies one suite validating one table (a file or its parts): equal stamps mean the same
    check on the same bytes."""
    import hashlib

    from adapters.feature_sets import table_digest

    suite_sha = hashlib.sha256(json.dumps(suite, sort_keys=True).encode()).hexdigest()
    return f"{suite_sha[:16]}:{table_digest(table)}"


def write_suites(repo: FeatureRepo, directory: Path) -> list[Path]:
    """(Re)generate every suite file, keeping hand-tuned expectations."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, generated in expectations.generated_suites(repo).items():
        path = suite_path(directory, name)
        existing = json.loads(path.read_text()) if path.is_file() else None
        path.write_text(json.dumps(expectations.merge(generated, existing), indent=2) + "\n")
        written.append(path)
    return written


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


def validate(
    settings: Settings, frame: pd.DataFrame, suite: dict, parameters: dict | None = None
) -> ValidationOutcome:
    """Validate ``frame`` against ``suite`` in the file-backed context and update the Data Docs."""
    import great_expectations as gx

    context = gx.get_context(mode="file", project_root_dir=str(settings.gx_dir))
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(
        globally=False
    )  # no progress bars in flow logs
    source = context.data_sources.add_or_update_pandas("churn")
    asset_name = suite["name"]
    try:
        asset = source.get_asset(asset_name)
    except LookupError:
        asset = source.add_dataframe_asset(asset_name)
    try:
        batch = asset.get_batch_definition("whole")
    except KeyError:
        batch = asset.add_batch_definition_whole_dataframe("whole")
    body = copy.deepcopy(
        {k: v for k, v in suite.items() if k in ("name", "expectations", "meta")}
    )  # GX edits in place
    body["expectations"] = [{k: v for k, v in e.items() if k != "id"} for e in body["expectations"]]
    gx_suite = context.suites.add_or_update(gx.ExpectationSuite(**body))
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=asset_name, data=batch, suite=gx_suite)
    )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=asset_name,
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data-docs")],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
        )
    )
    result = checkpoint.run(
        batch_parameters={"dataframe": frame}, expectation_parameters=parameters or {}
    )
    (run,) = result.run_results.values()
    failures = []
    for item in run.results:
        if item.success:
            continue
        config = item.expectation_config
        res = item.result or {}
        failures.append(
            {
                "expectation": config.type,
                "column": config.kwargs.get("column")
                or (",".join(config.kwargs.get("column_list", [])) or None),
                "unexpected_count": res.get("unexpected_count"),
                "examples": [_jsonable(v) for v in (res.get("partial_unexpected_list") or [])[:5]],
                "observed": _jsonable(res.get("observed_value")),
                "exception": (item.exception_info or {}).get("exception_message"),
            }
        )
    docs = settings.data_docs_index
    return ValidationOutcome(
        asset_name,
        bool(result.success),
        len(run.results),
        failures,
        str(docs) if docs.is_file() else None,
    )


Batch = tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]
"""A frame, the suite it must pass, and the suite's parameters."""


def enforce(settings: Settings, batches: list[Batch]) -> list[ValidationOutcome]:
    """Validate every batch; if any fails, raise one error listing every failing expectation of every suite."""
    outcomes = [
        validate(settings, frame, suite, parameters) for frame, suite, parameters in batches
    ]
    failed = [o for o in outcomes if not o.success]
    if failed:
        raise DataValidationError(failed)
    return outcomes
