"""Great Expectations 1.x: load the suites in expectations/, validate DataFrames, build Data Docs.

Suites are JSON files under ``CHURN_EXPECTATIONS_DIR`` (default ``./expectations``), named
``<suite>.json``. A suite missing there is generated from the feature repo's metadata in memory (so a
bring-your-own-data repo is validated before anyone writes suites for it); a suite whose metadata
changed since it was generated is an error until ``churn expectations generate`` is run.
Validation runs in a file-backed GX context under ``$CHURN_HOME/gx`` so every run updates the Data Docs.
Each validation carries a run name (what was validated, e.g. the feature-set version, and the flow
run) and names its data asset. Data Docs are made to read offline: GX's pages load jQuery, Bootstrap
and friends from public CDNs (the index's tables are drawn by JavaScript, so without those hosts it
is empty); after every build each page is rewritten to reference nothing outside the site, and the
index gets its validation results and suites as static HTML tables (``offline_data_docs``).
No Prefect here: the tasks log the outcomes and publish failures as artifacts.
"""

from __future__ import annotations

import copy
import html
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
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


def run_name(subject: str, flow_run_id: str | None = None) -> str:
    """A validation's run name: what was validated (e.g. ``feature-set-<version>``) and the flow run
    (``<subject>.flow-run-<first 8 of its id>``), safe as a path part (GX stores results by it)."""
    name = subject if not flow_run_id else f"{subject}.flow-run-{str(flow_run_id)[:8]}"
    return re.sub(r"[^A-Za-z0-9_.:-]+", "_", name)


def validate(
    settings: Settings,
    frame: pd.DataFrame,
    suite: dict,
    parameters: dict | None = None,
    name: str | None = None,
) -> ValidationOutcome:
    """Validate ``frame`` against ``suite`` in the file-backed context under run name ``name``, and
    update the Data Docs (readable offline)."""
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

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
            actions=[],  # Data Docs are built below, once the result names its asset
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
        )
    )
    result = checkpoint.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=parameters or {},
        run_id=RunIdentifier(run_name=name, run_time=datetime.now(UTC)),
    )
    ((key, run),) = result.run_results.items()
    # GX's validation page reads the asset from the legacy batch_kwargs (a DataFrame batch has none:
    # the page said "Data asset: None"); record it, then build the pages of this result and suite
    run.meta["batch_kwargs"] = {"datasource_name": source.name, "data_asset_name": asset_name}
    context.validation_results_store.set(key, run)
    context.build_data_docs(resource_identifiers=[key, key.expectation_suite_identifier])
    offline_data_docs(settings.data_docs_index.parent, settings.gx_dir / "gx" / VALIDATIONS_STORE)
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


def enforce(
    settings: Settings, batches: list[Batch], name: str | None = None
) -> list[ValidationOutcome]:
    """Validate every batch under run name ``name``; if any fails, raise one error listing every
    failing expectation of every suite."""
    outcomes = [
        validate(settings, frame, suite, parameters, name) for frame, suite, parameters in batches
    ]
    failed = [o for o in outcomes if not o.success]
    if failed:
        raise DataValidationError(failed)
    return outcomes


# --- Data Docs that read offline -------------------------------------------------------------------

VALIDATIONS_STORE = Path("uncommitted") / "validations"
OFFLINE_MARK = "<!-- churn: offline data docs -->"
_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.IGNORECASE | re.DOTALL)
_REMOTE = re.compile(
    r"<(?:link|img)\b[^>]*\b(?:href|src)\s*=\s*[\"']?(?:https?:)?//[^>]*>", re.IGNORECASE
)
_REMOTE_URL = re.compile(r"url\(\s*['\"]?(?:https?:)?//[^)]*\)", re.IGNORECASE)
_CTA_FOOTER = re.compile(r'<footer\b[^>]*id="ge-cta-footer".*?</footer>', re.IGNORECASE | re.DOTALL)
_TOOLBAR = re.compile(r'<div id="[^"]*-body-table-toolbar"[^>]*>.*?</div>', re.DOTALL)
_EMPTY_TABLE = re.compile(
    r'<table\s+id="[^"]*-body-table"\s+class="([^"]*)"[^>]*>\s*</table>', re.DOTALL
)
_OFFLINE_STYLE = (
    "<style>body{font-family:sans-serif;margin:0 16px}"
    "table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ccc;padding:3px 8px;"
    "text-align:left;vertical-align:top}.ge-failed{color:#b00020;font-weight:bold}"
    ".ge-passed{color:#1b7a1b}nav img,.cooltip .top{display:none}</style>"
)


def offline_data_docs(site: Path, results: Path) -> None:
    """Rewrite the Data Docs site to read without network: every page loses its references to other
    hosts (CDN scripts and styles, the tracking logo) and its scripts (they only drove those
    libraries); the index's JavaScript tables become static HTML tables built from the stored
    validation results (``results``) and the suite pages. Pages already rewritten are skipped."""
    for page in sorted(site.rglob("*.html")):
        if page.name == "index.html" and page.parent == site:
            continue
        with page.open(encoding="utf-8") as handle:  # the mark sits right after <head>
            if OFFLINE_MARK in handle.read(512):
                continue
        page.write_text(_offline(page.read_text(encoding="utf-8")), encoding="utf-8")
    index = site / "index.html"
    if index.is_file():  # GX rebuilds the index on every build: rewrite it each time
        text = index.read_text(encoding="utf-8")
        if OFFLINE_MARK not in text:
            index.write_text(_offline_index(_offline(text), site, results), encoding="utf-8")


def _offline(text: str) -> str:
    text = _SCRIPT.sub("", text)
    text = _REMOTE.sub("", text)
    text = _REMOTE_URL.sub("none", text)  # e.g. a background logo in GX's own styles
    text = _CTA_FOOTER.sub("", text)
    text = text.replace("<head>", f"<head>\n{OFFLINE_MARK}\n{_OFFLINE_STYLE}", 1)
    return text


def validation_rows(site: Path, results: Path) -> list[dict[str, Any]]:
    """Every validation page of the site with what its stored result says, newest first."""
    rows = []
    for page in (site / "validations").rglob("*.html"):
        relative = page.relative_to(site / "validations")
        stored = results / relative.with_suffix(".json")
        if not stored.is_file():
            continue
        result = json.loads(stored.read_text())
        meta = result.get("meta", {})
        run_id = meta.get("run_id") or {}
        batch = meta.get("active_batch_definition") or {}
        statistics = result.get("statistics", {})
        rows.append(
            {
                "page": page.relative_to(site).as_posix(),
                "success": bool(result.get("success")),
                "run_time": str(run_id.get("run_time") or ""),
                "run_name": run_id.get("run_name") or "",
                "asset": batch.get("data_asset_name") or "",
                "suite": result.get("suite_name") or "",
                "passed": f"{statistics.get('successful_expectations', '?')}/"
                f"{statistics.get('evaluated_expectations', '?')}",
            }
        )
    return sorted(rows, key=lambda r: r["run_time"], reverse=True)


def _static_table(head: list[str], rows: list[str], css: str) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(rows) or f'<tr><td colspan="{len(head)}">none yet</td></tr>'
    return f'<table class="{html.escape(css)}"><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>'


def _suite_name(site: Path, page: Path) -> str:
    """GX stores suite ``a.b`` as ``expectations/a/b.html``."""
    return ".".join(page.relative_to(site / "expectations").with_suffix("").parts)


def _offline_index(text: str, site: Path, results: Path) -> str:
    def link(href: str, label: str) -> str:
        return f'<a href="{html.escape(href)}">{html.escape(label)}</a>'

    validations = [
        "<tr>"
        + (
            '<td class="ge-passed">passed</td>'
            if r["success"]
            else '<td class="ge-failed">FAILED</td>'
        )
        + f"<td>{link(r['page'], r['run_time'])}</td><td>{html.escape(r['run_name'])}</td>"
        f"<td>{html.escape(r['asset'])}</td><td>{html.escape(r['suite'])}</td>"
        f"<td>{html.escape(r['passed'])}</td></tr>"
        for r in validation_rows(site, results)
    ]
    suites = [
        f"<tr><td>{link(p.relative_to(site).as_posix(), _suite_name(site, p))}</td></tr>"
        for p in sorted((site / "expectations").rglob("*.html"))
    ]

    def static(match: re.Match[str]) -> str:
        css = match.group(1)
        if "validation-results" in css:
            head = ["status", "run time", "run name", "data asset", "suite", "expectations passed"]
            return _static_table(head, validations, css)
        if "expectation_suites" in css:
            return _static_table(["expectation suite"], suites, css)
        return ""

    text = _TOOLBAR.sub("", text)
    return _EMPTY_TABLE.sub(static, text)
