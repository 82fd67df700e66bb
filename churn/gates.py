"""Validation gates: minimums with a warn band, regression vs the champion, latency, PSI drift,
slice gaps, and the PASS/WARN/FAIL report that decides APPROVED or REJECTED.

Every gate fails by default; a gate in ``warn`` mode reports what would have failed as WARN.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from churn.contracts import ChampionScore, Latency
from churn.drift import MISSING, population_stability_index
from churn.params import GateParams

Status = Literal["PASS", "WARN", "FAIL"]


@dataclass(frozen=True)
class Check:
    gate: str
    name: str
    status: Status
    value: float | None
    limit: float | None
    """The gate's minimum or maximum for this check (the champion's value for regression checks)."""
    message: str


def apply_mode(check: Check, mode: str) -> Check:
    """In ``warn`` mode a failing check is reported as WARN, and says so."""
    if mode == "warn" and check.status == "FAIL":
        return Check(
            check.gate,
            check.name,
            "WARN",
            check.value,
            check.limit,
            check.message + " (warn mode: would fail)",
        )
    return check


def at_least(gate: str, name: str, value: float, minimum: float, warn_band: float) -> Check:
    """PASS at or above ``minimum``; WARN within ``warn_band`` below it; FAIL further below."""
    status: Status = (
        "PASS" if value >= minimum else "WARN" if value >= minimum - warn_band else "FAIL"
    )
    return Check(
        gate,
        name,
        status,
        value,
        minimum,
        f"{name}: {value:.4f} (min {minimum}, warn band {warn_band})",
    )


def at_most(
    gate: str, name: str, value: float, maximum: float, warn_at: float | None = None, unit: str = ""
) -> Check:
    """PASS at or below ``warn_at`` (or ``maximum``); WARN up to ``maximum``; FAIL above it."""
    warn_at = maximum if warn_at is None else warn_at
    status: Status = "PASS" if value <= warn_at else "WARN" if value <= maximum else "FAIL"
    return Check(
        gate, name, status, value, maximum, f"{name}: {value:.4f}{unit} (max {maximum}{unit})"
    )


def no_regression(
    metric: str,
    challenger: float,
    champion: float | None,
    max_drop: float,
    lower_is_better: bool = False,
) -> Check:
    """Challenger vs champion on the same holdout: PASS if not worse, WARN within ``max_drop``, FAIL beyond."""
    if champion is None:
        return Check(
            "regression",
            metric,
            "PASS",
            challenger,
            None,
            f"{metric}: {challenger:.4f}; no champion yet, nothing to regress from",
        )
    drop = (challenger - champion) if lower_is_better else (champion - challenger)
    status: Status = "PASS" if drop <= 0 else "WARN" if drop <= max_drop else "FAIL"
    return Check(
        "regression",
        metric,
        status,
        challenger,
        champion,
        f"{metric}: challenger {challenger:.4f}, champion {champion:.4f}, degradation {drop:+.4f} (max {max_drop})",
    )


# --- slices ----------------------------------------------------------------------------------------


def slice_metrics(
    frame: pd.DataFrame, column: str, y_true: str, proba: str, min_rows: int
) -> dict[str, float]:
    """AUC per level of ``column`` where the slice has ``min_rows`` rows and both classes."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for level, part in frame.groupby(frame[column].fillna(MISSING).astype(str), sort=True):
        if len(part) >= min_rows and part[y_true].nunique() == 2:
            out[str(level)] = float(roc_auc_score(part[y_true], part[proba]))
    return out


# --- report ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateReport:
    checks: tuple[Check, ...]
    model_name: str
    challenger_version: str
    champion_version: str | None

    @property
    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.checks) for s in ("PASS", "WARN", "FAIL")}

    @property
    def approved(self) -> bool:
        return self.counts["FAIL"] == 0

    @property
    def decision(self) -> str:
        return "APPROVED" if self.approved else "REJECTED"

    def to_text(self) -> str:
        champion = f"v{self.champion_version}" if self.champion_version else "none"
        lines = [
            "=" * 72,
            "MODEL VALIDATION REPORT",
            f"{self.model_name}: challenger v{self.challenger_version} vs champion {champion}",
            "=" * 72,
        ]
        lines += [f"  [{c.status}] {c.gate}: {c.message}" for c in self.checks]
        counts = self.counts
        lines += [
            "=" * 72,
            f"Results: {counts['PASS']} passed, {counts['WARN']} warnings, {counts['FAIL']} failed",
            f"Overall: {self.decision}",
            "=" * 72,
        ]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        rows = "\n".join(
            f"| {c.status} | {c.gate} | {c.name} | {_fmt(c.value)} | {_fmt(c.limit)} | {c.message} |"
            for c in self.checks
        )
        counts = self.counts
        return (
            f"# {self.decision}: {self.model_name} v{self.challenger_version}\n\n"
            f"{counts['PASS']} passed, {counts['WARN']} warnings, {counts['FAIL']} failed "
            f"(champion: {('v' + self.champion_version) if self.champion_version else 'none'})\n\n"
            "| status | gate | check | value | limit | detail |\n|---|---|---|---|---|---|\n"
            + rows
            + "\n"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "challenger_version": self.challenger_version,
            "champion_version": self.champion_version,
            "decision": self.decision,
            "counts": self.counts,
            "checks": [asdict(c) for c in self.checks],
        }


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.4g}"


def evaluate_gates(
    params: GateParams,
    *,
    model_name: str,
    challenger_version: str,
    challenger_metrics: dict[str, float],
    champion: ChampionScore,
    latency: Latency,
    psi: dict[str, float],
    slices: dict[str, dict[str, float]],
) -> GateReport:
    """Turn measured numbers into the ordered checks of every gate."""
    checks: list[Check] = []
    perf = params.performance
    for metric, minimum in (
        ("auc_roc", perf.min_auc_roc),
        ("pr_auc", perf.min_pr_auc),
        ("recall", perf.min_recall),
    ):
        checks.append(
            apply_mode(
                at_least(
                    "performance", metric, challenger_metrics[metric], minimum, perf.warn_band
                ),
                perf.mode,
            )
        )

    reg = params.regression
    if champion.note:
        checks.append(
            apply_mode(Check("regression", "champion", "FAIL", None, None, champion.note), reg.mode)
        )
    else:
        for metric in reg.metrics:
            before = None if champion.metrics is None else champion.metrics[metric]
            checks.append(
                apply_mode(
                    no_regression(metric, challenger_metrics[metric], before, reg.max_degradation),
                    reg.mode,
                )
            )

    lat = params.latency
    for name, p50, p99, maximum in (
        ("single_row", latency.single_row_p50, latency.single_row_p99, lat.max_p99_single_ms),
        ("batch_1000", latency.batch_p50, latency.batch_p99, lat.max_p99_batch_ms),
    ):
        check = at_most("latency", f"p99_{name}", p99, maximum, unit=" ms")
        message = f"{name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms (max p99 {maximum} ms)"
        checks.append(
            apply_mode(
                Check(check.gate, check.name, check.status, check.value, check.limit, message),
                lat.mode,
            )
        )

    drift = params.drift
    for feature, value in sorted(psi.items(), key=lambda kv: -kv[1]):
        check = at_most("drift", f"psi_{feature}", value, drift.max_psi, warn_at=drift.warn_psi)
        message = f"{feature} PSI {value:.4f} (warn {drift.warn_psi}, max {drift.max_psi})"
        checks.append(
            apply_mode(
                Check(check.gate, check.name, check.status, value, drift.max_psi, message),
                drift.mode,
            )
        )

    sl = params.slices
    for column, per_level in slices.items():
        if len(per_level) < 2:
            checks.append(
                Check(
                    "slices",
                    f"auc_gap_{column}",
                    "PASS",
                    None,
                    sl.max_gap,
                    f"{column}: fewer than two slices with {sl.min_rows}+ rows and both classes; nothing to compare",
                )
            )
            continue
        worst = min(per_level, key=lambda level: per_level[level])
        best = max(per_level, key=lambda level: per_level[level])
        gap = per_level[best] - per_level[worst]
        status: Status = "PASS" if gap <= sl.max_gap else "FAIL"
        detail = ", ".join(f"{k} {v:.3f}" for k, v in sorted(per_level.items()))
        checks.append(
            apply_mode(
                Check(
                    "slices",
                    f"auc_gap_{column}",
                    status,
                    gap,
                    sl.max_gap,
                    f"{column} AUC gap {gap:.4f} ({worst} vs {best}; max {sl.max_gap}): {detail}",
                ),
                sl.mode,
            )
        )
    return GateReport(tuple(checks), model_name, challenger_version, champion.version)


# --- measurements ----------------------------------------------------------------------------------


def time_scoring(
    score: Callable[[list[list[Any]]], Any], rows: list[list[Any]], calls: int
) -> Latency:
    """p50/p99 milliseconds of ``score`` for one row per call and for all ``rows`` per call."""

    def one_row(i: int) -> list[list[Any]]:
        return rows[i % len(rows) : i % len(rows) + 1]

    def all_rows(i: int) -> list[list[Any]]:
        return rows

    out: dict[str, float] = {}
    for name, repeats, pick in (
        ("single_row", calls, one_row),
        ("batch", max(20, calls // 10), all_rows),
    ):
        score(pick(0))  # warm-up
        samples = []
        for i in range(repeats):
            batch = pick(i)
            started = time.perf_counter()
            score(batch)
            samples.append((time.perf_counter() - started) * 1000)
        out[f"{name}_p50"], out[f"{name}_p99"] = (
            float(np.percentile(samples, 50)),
            float(np.percentile(samples, 99)),
        )
    return Latency(**out)


def feature_drift(
    reference: pd.DataFrame, current: pd.DataFrame, names: list[str], bins: int
) -> dict[str, float]:
    """PSI per feature of ``current`` against ``reference``."""
    return {
        name: population_stability_index(reference[name], current[name], bins=bins)
        for name in names
    }


def slices(
    test: pd.DataFrame, columns: list[str], label: str, proba: np.ndarray, min_rows: int
) -> dict[str, dict[str, float]]:
    """Test AUC per level of each slice column."""
    unknown = [c for c in columns if c not in test.columns]
    if unknown:
        raise ValueError(
            f"slice columns {unknown} are not in the training set (gates.slices.columns)"
        )
    scored = test.assign(_proba=proba)
    return {c: slice_metrics(scored, c, label, "_proba", min_rows) for c in columns}
