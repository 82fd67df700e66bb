"""Validation gates: minimums with a warn band, regression vs the champion, latency, PSI drift,
slice gaps, and the PASS/WARN/FAIL/SKIP report that decides APPROVED or REJECTED.

A check that had nothing to compare (no champion yet, no slice large enough, a column excluded from
drift) says SKIP with the reason; it neither passes nor blocks.

Every gate fails by default; a gate in ``warn`` mode reports what would have failed as WARN.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from churn.contracts import ChampionScore, FeatureDrift, Latency, Timing
from churn.drift import MISSING, population_stability_index
from churn.params import GateParams

AS_OF = "as_of"
Status = Literal["PASS", "WARN", "FAIL", "SKIP"]
STATUSES: tuple[Status, ...] = ("PASS", "WARN", "FAIL", "SKIP")
BUSY_RATIO = 2.0
"""Wall time above this multiple of CPU time means the machine, not the model, was slow."""


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
            "SKIP",
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
        return {s: sum(c.status == s for c in self.checks) for s in STATUSES}

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
            f"Results: {counts['PASS']} passed, {counts['WARN']} warnings, {counts['FAIL']} failed, "
            f"{counts['SKIP']} skipped",
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
        champion = f"v{self.champion_version}" if self.champion_version else "none"
        return (
            f"# {self.decision}: {self.model_name} v{self.challenger_version}\n\n"
            f"{counts['PASS']} passed, {counts['WARN']} warnings, {counts['FAIL']} failed, "
            f"{counts['SKIP']} skipped (champion: {champion})\n\n"
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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateReport:
        """The report ``to_dict`` wrote (e.g. read back from a training run). The decision is
        recomputed from the checks; a stored decision that disagrees with them is an error."""
        report = cls(
            checks=tuple(Check(**check) for check in data["checks"]),
            model_name=data["model_name"],
            challenger_version=data["challenger_version"],
            champion_version=data["champion_version"],
        )
        if data.get("decision", report.decision) != report.decision:
            raise ValueError(
                f"gate report of {report.model_name} v{report.challenger_version} says "
                f"{data['decision']} but its checks say {report.decision}: it was edited or is corrupt"
            )
        return report


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
    drift: FeatureDrift,
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
    for name, timing, maximum in (
        ("single_row", latency.single_row, lat.max_p99_single_ms),
        (f"batch_{latency.batch_rows}", latency.batch, lat.max_p99_batch_ms),
    ):
        check = at_most("latency", f"p99_{name}", timing.cpu_p99, maximum, unit=" ms")
        checks.append(
            apply_mode(latency_check(check, name, timing, latency.rounds, maximum), lat.mode)
        )

    limits = params.drift
    if not drift.psi:
        checks.append(
            Check(
                "drift",
                "psi",
                "SKIP",
                None,
                limits.max_psi,
                f"no feature to compare ({drift.compared})",
            )
        )
    for feature, reason in sorted(drift.excluded.items()):
        checks.append(
            Check(
                "drift",
                f"psi_{feature}",
                "SKIP",
                None,
                limits.max_psi,
                f"{feature}: excluded: {reason}",
            )
        )
    for feature, value in sorted(drift.psi.items(), key=lambda kv: -kv[1]):
        check = at_most("drift", f"psi_{feature}", value, limits.max_psi, warn_at=limits.warn_psi)
        message = f"{feature} PSI {value:.4f} (warn {limits.warn_psi}, max {limits.max_psi}; {drift.compared})"
        checks.append(
            apply_mode(
                Check(check.gate, check.name, check.status, value, limits.max_psi, message),
                limits.mode,
            )
        )

    sl = params.slices
    if not slices:
        checks.append(
            Check(
                "slices", "auc_gap", "SKIP", None, sl.max_gap, "no categorical feature to slice by"
            )
        )
    for column, per_level in slices.items():
        if len(per_level) < 2:
            checks.append(
                Check(
                    "slices",
                    f"auc_gap_{column}",
                    "SKIP",
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


def latency_check(check: Check, name: str, timing: Timing, rounds: int, maximum: float) -> Check:
    """The latency check's message: CPU time judged, wall time beside it, and whether the machine was busy."""
    message = (
        f"{name}: p50 {timing.cpu_p50:.2f} ms, p99 {timing.cpu_p99:.2f} ms CPU time (max p99 {maximum} ms; "
        f"wall p99 {timing.wall_p99:.2f} ms; best of {rounds} rounds, one thread as served)"
    )
    if timing.wall_p99 > BUSY_RATIO * timing.cpu_p99 and timing.wall_p99 > maximum:
        message += (
            f"; the machine was busy: wall time {timing.wall_p99 / timing.cpu_p99:.1f}x CPU time, so the model is "
            "judged on CPU time"
        )
    return Check(check.gate, check.name, check.status, check.value, check.limit, message)


def _percentiles(samples: list[float]) -> tuple[float, float]:
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 99))


def time_calls(
    score: Callable[[list[list[Any]]], Any], batches: list[list[list[Any]]], rounds: int
) -> Timing:
    """Score every batch once per round, timing each call's CPU time (this thread's) and wall time; the
    best round's p50/p99 of each. CPU time does not grow when other processes hold the cores."""
    cpu_rounds, wall_rounds = [], []
    score(batches[0])  # warm-up
    for _ in range(rounds):
        cpu, wall = [], []
        for batch in batches:
            started_cpu, started = time.thread_time(), time.perf_counter()
            score(batch)
            cpu.append((time.thread_time() - started_cpu) * 1000)
            wall.append((time.perf_counter() - started) * 1000)
        cpu_rounds.append(_percentiles(cpu))
        wall_rounds.append(_percentiles(wall))
    best_cpu, best_wall = min(cpu_rounds, key=lambda p: p[1]), min(wall_rounds, key=lambda p: p[1])
    return Timing(best_cpu[0], best_cpu[1], best_wall[0], best_wall[1])


def time_scoring(
    score: Callable[[list[list[Any]]], Any], rows: list[list[Any]], calls: int, rounds: int
) -> Latency:
    """The latency of ``score`` for one row per call (``calls`` rows) and for all ``rows`` per call."""
    singles = [rows[i % len(rows) : i % len(rows) + 1] for i in range(calls)]
    return Latency(
        single_row=time_calls(score, singles, rounds),
        batch=time_calls(score, [rows] * max(10, calls // 10), rounds),
        batch_rows=len(rows),
        rounds=rounds,
    )


def feature_drift(
    training: pd.DataFrame,
    online: pd.DataFrame,
    excluded: dict[str, str],
    names: list[str],
    bins: int,
    reference_dates: int,
) -> FeatureDrift:
    """PSI per feature of the online snapshot against the training set's latest ``reference_dates``
    as-of dates: the population the model was last tested on, not the whole history (a feature that
    grows with time would drift against the early dates of any history)."""
    dates = sorted(training[AS_OF].unique())[-reference_dates:]
    reference = training[training[AS_OF].isin(dates)]
    first, last = pd.Timestamp(dates[0]).date(), pd.Timestamp(dates[-1]).date()
    span = f"{first}" if first == last else f"{first}..{last}"
    compared = f"snapshot vs training as of {span}"
    psi = {
        n: population_stability_index(reference[n], online[n], bins=bins)
        for n in names
        if n not in excluded
    }
    return FeatureDrift(psi, {n: excluded[n] for n in names if n in excluded}, compared)


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
