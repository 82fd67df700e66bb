"""Evidently HTML reports of a monitor window that tell the monitor's own verdict and figures.

The drift report is Evidently's ``DataDriftPreset`` over the features the monitor judged, with the
monitor's rules: every feature is scored by the stattest ``churn_psi``, which returns the monitor's
own figure for that column (PSI over every row of the window in the reference's quantile bins, and
its drifted flag from the PSI or chi-squared rule, ``churn.monitoring.feature_drift``) with that
rule's limit as the column's threshold; the preset's drift share is ``AlertRules.max_drifted_share``
(a share *above* it is dataset drift). So Evidently's headline and per-column flags are the
monitor's, for the same window. The distribution plots show bounded, fixed-seed samples; no figure
is computed from them. Classification quality is scored at the champion's stored decision threshold.

Files are named by the window's bounds (to the second), the champion's version, the verdict and the
flow run (``drift-<start>-<end>-v<version>-<verdict>[-<run>].html``, ``quality-...`` beside it) and
never overwrite one another. Each page carries a static header (title, verdict, the monitor's table)
that reads without JavaScript.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churn import drift, monitoring
from churn.contracts import Reference, WindowMeasurement
from churn.monitoring import Condition
from churn.params import AlertRules, MonitorParams

STATTEST = "churn_psi"
STATTEST_DISPLAY = "PSI, every row of the window (monitor's bins and rule)"
DEFAULT_THRESHOLD = 0.5
"""Used only when a model records no decision threshold (the header says so)."""

_FIGURES: ContextVar[dict[str, tuple[float, bool]] | None] = ContextVar(
    "churn_psi_figures", default=None
)


@dataclass(frozen=True)
class DriftVerdict:
    """The monitor's dataset-drift verdict for one window, as ``churn.monitoring`` judges it."""

    share: Condition
    """``drifted_share``: the share of judged features that drifted, against ``max_drifted_share``."""
    features: dict[str, Condition]
    """``psi:<feature>`` per feature, by feature name (sorted)."""
    judged: bool
    """False when the window has fewer than ``min_rows`` predictions (no alert is raised on it)."""

    @property
    def drifted(self) -> list[str]:
        return [name for name, c in self.features.items() if c.breached]

    @property
    def label(self) -> str:
        if not self.judged:
            return "not judged (too few predictions)"
        return "DATASET DRIFT" if self.share.breached else "no dataset drift"

    @property
    def slug(self) -> str:
        if not self.judged:
            return "not-judged"
        return "drifted" if self.share.breached else "stable"


def drift_verdict(window: WindowMeasurement, rules: AlertRules) -> DriftVerdict:
    share, features = monitoring.dataset_drift(window.drift, rules)
    return DriftVerdict(
        share,
        {c.rule.removeprefix("psi:"): c for c in features},
        window.metrics.count >= rules.min_rows,
    )


def _stamp(moment: datetime) -> str:
    return f"{moment:%Y%m%dT%H%M%S}"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def report_name(
    start: datetime, end: datetime, model_version: str, verdict: str, run_id: str | None = None
) -> str:
    """``drift-<start>-<end>-v<version>-<verdict>[-<first 8 of the run id>].html`` (bounds to the second)."""
    run = f"-{_safe(run_id)[:8]}" if run_id else ""
    return f"drift-{_stamp(start)}-{_stamp(end)}-v{_safe(model_version)}-{verdict}{run}.html"


def quality_path(drift_report: Path) -> Path:
    """The classification-quality report beside a drift report."""
    return drift_report.with_name("quality-" + drift_report.name.removeprefix("drift-"))


def report_files(drift_report: Path) -> list[Path]:
    """A window's report files: the drift report and, when labels existed, its quality report."""
    return [p for p in (drift_report, quality_path(drift_report)) if p.is_file()]


def _unique(path: Path) -> Path:
    """``path``, or ``<stem>-2``, ``-3``, ... when it (or its quality report) exists: never overwrite."""
    candidate, k = path, 1
    while candidate.exists() or quality_path(candidate).exists():
        k += 1
        candidate = path.with_name(f"{path.stem}-{k}{path.suffix}")
    return candidate


def render(
    reports_dir: Path,
    reference: Reference,
    window: WindowMeasurement,
    params: MonitorParams,
    start: datetime,
    end: datetime,
    run_id: str | None = None,
) -> Path | None:
    """Write the drift report (and ``quality-*.html`` beside it when labels exist) under ``reports_dir``;
    returns the drift report's path. None when the window has nothing to show."""
    if window.sample is None or window.sample.empty:
        return None
    rules = params.alerts
    verdict = drift_verdict(window, rules)
    reports_dir.mkdir(parents=True, exist_ok=True)
    out = _unique(
        reports_dir / report_name(start, end, reference.model_version, verdict.slug, run_id)
    )
    reference_rows = reference.frame.sample(
        n=min(params.report_sample_rows, len(reference.frame)), random_state=7
    )
    bounds = f"{start:%Y-%m-%d %H:%M:%S}..{end:%Y-%m-%d %H:%M:%S} UTC"
    title = f"Drift {bounds}, champion v{reference.model_version}: {verdict.label}"
    snapshot = drift_report(
        reference, reference_rows, window.sample, verdict, rules, params.psi_bins
    )
    html_text = _fix_threshold_sentence(snapshot.get_html_str(as_iframe=False), rules)
    header = _drift_header(title, reference, window, verdict, rules, len(reference_rows))
    out.write_text(_with_header(html_text, title, header), encoding="utf-8")
    labelled = window.labelled_sample
    if labelled is not None and labelled["label"].nunique() == 2:
        threshold = reference.decision_threshold
        cut = DEFAULT_THRESHOLD if threshold is None else threshold
        quality_title = (
            f"Classification quality {bounds}, champion v{reference.model_version} at decision "
            f"threshold {cut:.4f}: {_auc_verdict(reference, window, rules)}"
        )
        snapshot = quality_report(reference, reference_rows, labelled, cut)
        header = _quality_header(quality_title, reference, window, len(labelled), threshold)
        quality_path(out).write_text(
            _with_header(snapshot.get_html_str(as_iframe=False), quality_title, header),
            encoding="utf-8",
        )
    return out


# --- Evidently -------------------------------------------------------------------------------------


def _monitor_psi(
    reference_data: pd.Series, current_data: pd.Series, feature_type: Any, threshold: float
) -> tuple[float, bool]:
    """The ``churn_psi`` stattest: the monitor's figure and flag for the column being scored."""
    figures = _FIGURES.get()
    if figures is None or reference_data.name not in figures:
        raise LookupError(
            f"no monitor figure for column {reference_data.name!r}: the {STATTEST} stattest only "
            "scores the columns of a report built by adapters.evidently_reports.drift_report"
        )
    return figures[str(reference_data.name)]


def _register_stattest() -> None:
    """Register ``churn_psi`` with Evidently (idempotent; done on first use, not at import)."""
    from evidently.legacy.calculations.stattests import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    register_stattest(
        StatTest(
            name=STATTEST,
            display_name=STATTEST_DISPLAY,
            allowed_feature_types=[ColumnType.Categorical, ColumnType.Numerical],
            default_threshold=AlertRules().drift.max_psi,
        ),
        _monitor_psi,
    )


@contextmanager
def _figures(verdict: DriftVerdict) -> Iterator[None]:
    token = _FIGURES.set({n: (c.value, c.breached) for n, c in verdict.features.items()})
    try:
        yield
    finally:
        _FIGURES.reset(token)


def _bin_labels(values: pd.Series, edges: np.ndarray) -> pd.Series:
    """The monitor's numeric bins as labels (for a column one side has no values of)."""
    cuts = [-math.inf, *(float(e) for e in edges), math.inf]
    names = [f"({lo:g}, {hi:g}]" for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)]
    numbers = values.to_numpy(dtype=float, na_value=np.nan)
    index = np.searchsorted(edges, np.nan_to_num(numbers), side="left")
    labels = np.array(names, dtype=object)[index]
    labels[np.isnan(numbers)] = drift.MISSING
    return pd.Series(labels, index=values.index, dtype=object)


def _evidently_frames(
    reference: Reference,
    reference_rows: pd.DataFrame,
    current: pd.DataFrame,
    names: list[str],
    bins: int,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    """Both sides as Evidently gets them, and the numeric / categorical columns.

    Categories show missing values as the monitor's missing bin (Evidently would drop them); a
    numeric column one side has no values of is shown in the monitor's bins (Evidently refuses an
    empty column)."""
    ref = reference_rows[[*names, "probability"]].copy()
    cur = current[[*names, "probability"]].copy()
    numeric, categorical = [], []
    for name in names:
        if reference.features[name] == "str":
            for frame in (ref, cur):
                frame[name] = frame[name].astype(object).where(frame[name].notna(), drift.MISSING)
                frame[name] = frame[name].astype(str)
            categorical.append(name)
        elif ref[name].notna().any() and cur[name].notna().any():
            numeric.append(name)
        else:
            edges = drift.quantile_edges(
                reference.frame[name].to_numpy(dtype=float, na_value=np.nan), bins
            )
            ref[name], cur[name] = _bin_labels(ref[name], edges), _bin_labels(cur[name], edges)
            categorical.append(name)
    return ref, cur, numeric, categorical


def drift_share(rules: AlertRules) -> float:
    """Evidently calls a share ``>=`` its drift_share dataset drift; the monitor a share ``>`` its limit."""
    return math.nextafter(rules.max_drifted_share, math.inf)


def drift_report(
    reference: Reference,
    reference_rows: pd.DataFrame,
    current: pd.DataFrame,
    verdict: DriftVerdict,
    rules: AlertRules,
    bins: int = 10,
) -> Any:
    """Evidently's data drift preset over the judged features, scored with the monitor's figures and
    limits, plus the prediction's distribution (not part of the share, as in the monitor)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset, ValueStats

    _register_stattest()
    names = list(verdict.features)
    ref, cur, numeric, categorical = _evidently_frames(
        reference, reference_rows, current, names, bins
    )
    definition = DataDefinition(
        numerical_columns=[*numeric, "probability"], categorical_columns=categorical
    )
    metrics: list[Any] = []
    if names:
        metrics.append(
            DataDriftPreset(
                columns=names,
                drift_share=drift_share(rules),
                per_column_method={n: STATTEST for n in names},
                per_column_threshold={n: verdict.features[n].limit for n in names},
            )
        )
    metrics.append(ValueStats(column="probability"))
    with _figures(verdict):
        return Report(
            metrics,
            metadata={
                "model_version": reference.model_version,
                "verdict": verdict.label,
                "drifted_share": verdict.share.value,
                "max_drifted_share": rules.max_drifted_share,
            },
            tags=["churn-monitor", verdict.slug],
        ).run(
            current_data=Dataset.from_pandas(cur, data_definition=definition),
            reference_data=Dataset.from_pandas(ref, data_definition=definition),
        )


def quality_report(
    reference: Reference, reference_rows: pd.DataFrame, labelled: pd.DataFrame, threshold: float
) -> Any:
    """Evidently's binary classification quality at ``threshold`` (the model's decision threshold):
    matured labels now vs the reference's held-out rows."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    label = [
        c for c in reference_rows.columns if c not in reference.features and c != "probability"
    ][0]
    ref = pd.DataFrame(
        {"label": reference_rows[label].astype(int), "probability": reference_rows["probability"]}
    )
    cur = labelled[["label", "probability"]].astype({"label": int})
    definition = DataDefinition(
        numerical_columns=["probability"],
        classification=[BinaryClassification(target="label", prediction_probas="probability")],
    )
    return Report([ClassificationPreset(probas_threshold=threshold)]).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )


# --- the static header -----------------------------------------------------------------------------


def _fix_threshold_sentence(text: str, rules: AlertRules) -> str:
    """Evidently prints the drift share it was given (the float just above the limit) in its headline."""
    return text.replace(
        f"Dataset drift detection threshold is {drift_share(rules)}",
        f"Dataset drift means a drifted share above {rules.max_drifted_share:g}",
    )


def _with_header(page: str, title: str, header: str) -> str:
    """The page with a ``<title>`` and a static header above Evidently's dashboard."""
    page = page.replace("<head>", f"<head>\n<title>{html.escape(title)}</title>", 1)
    return page.replace("<body>", f"<body>\n{header}", 1)


def _table(head: list[str], rows: list[list[str]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return (
        f'<table class="churn-figures"><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>'
    )


_STYLE = (
    "<style>#churn-report-header{font-family:sans-serif;margin:16px 24px;color:#222}"
    "#churn-report-header table{border-collapse:collapse;font-size:13px}"
    "#churn-report-header th,#churn-report-header td{border:1px solid #ccc;padding:3px 8px;text-align:left}"
    "#churn-report-header .drifted{color:#b00020;font-weight:bold}</style>"
)


def _drift_header(
    title: str,
    reference: Reference,
    window: WindowMeasurement,
    verdict: DriftVerdict,
    rules: AlertRules,
    reference_rows: int,
) -> str:
    share = verdict.share
    drifted = verdict.drifted
    rows = [
        [
            name,
            f"{c.value:.4f}",
            c.why,
            f"{c.limit:g}",
            "drifted" if c.breached else "no",
            str(window.drift.carried.get(name, "")),
        ]
        for name, c in verdict.features.items()
    ]
    prediction = window.drift.prediction_psi
    judged = (
        ""
        if verdict.judged
        else f" The window has {window.metrics.count} predictions, fewer than min_rows "
        f"{rules.min_rows}: the monitor raises no alert on it; the figures are shown as measured."
    )
    css = ' class="drifted"' if verdict.judged and share.breached else ""
    return (
        f'<header id="churn-report-header">{_STYLE}<h1>{html.escape(title)}</h1>'
        f"<p{css}>The monitor's verdict: <b>{html.escape(verdict.label)}</b>: "
        f"{len(drifted)} of {len(verdict.features)} features drifted (share {share.value:.4f}; "
        f"dataset drift above {rules.max_drifted_share:g}).{html.escape(judged)}</p>"
        f"<p>Drifted: {html.escape(', '.join(drifted) or 'none')}. Prediction PSI: "
        f"{'n/a' if prediction is None else f'{prediction:.4f}'} (shown, not judged).</p>"
        "<p>Evidently's drift tables below show the monitor's own figures (stattest "
        f"<code>{STATTEST}</code>): each feature's PSI over all {window.metrics.count} rows of the "
        "window, in bins from the reference's quantiles (categories: the reference's levels, one bin "
        "for unseen levels, one for missing values), drifted when PSI is above max_psi or a "
        "chi-squared test on the same bins has p below alpha with PSI at least min_psi (then the "
        "threshold shown is min_psi). The distribution plots show fixed-seed samples: "
        f"{len(window.sample) if window.sample is not None else 0} rows of the window, "
        f"{reference_rows} of the reference.</p>"
        + _table(["feature", "PSI", "rule", "limit", "drifted", "rows with feature"], rows)
        + "</header>"
    )


def _auc_verdict(reference: Reference, window: WindowMeasurement, rules: AlertRules) -> str:
    current = monitoring.conditions(
        window, reference.training_auc_roc, rules, reference.positive_rate
    )
    drop = next((c for c in current if c.rule == "auc_roc_drop"), None)
    if drop is None:
        return "auc_roc not judged"
    return (
        f"auc_roc DROPPED {drop.value:.4f} (limit {drop.limit:g})"
        if drop.breached
        else f"auc_roc drop {drop.value:.4f} within {drop.limit:g}"
    )


def _quality_header(
    title: str,
    reference: Reference,
    window: WindowMeasurement,
    sampled: int,
    threshold: float | None,
) -> str:
    names = ["accuracy", "precision", "recall", "f1", "auc_roc", "pr_auc"]
    rows = [
        [what, str(m.labelled), *(f"{m.metrics[n]:.4f}" if n in m.metrics else "" for n in names)]
        for what, m in (
            ("look-back (every matured label)", window.labels),
            ("this window's predictions", window.window_labels),
        )
    ]
    cut = (
        f"the model's stored decision threshold {threshold:.4f}"
        if threshold is not None
        else f"{DEFAULT_THRESHOLD} (the model records no decision threshold)"
    )
    return (
        f'<header id="churn-report-header">{_STYLE}<h1>{html.escape(title)}</h1>'
        f"<p>Labels and predictions are scored at {html.escape(cut)}, as the service decides. "
        f"Evidently's figures below use a fixed-seed sample of {sampled} matured labels and the "
        "reference's held-out rows; the monitor's figures over every matured label:</p>"
        + _table(["labels", "count", *names], rows)
        + "</header>"
    )
