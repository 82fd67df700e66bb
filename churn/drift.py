"""Population Stability Index: one binning rule, computed in numpy or generated as DuckDB SQL.

Numbers are binned at the reference's quantiles, ``(-inf, e1], (e1, e2], ..., (ek, inf)``, plus a
bin for missing values; categories by the reference's levels, plus one bin for levels the reference
never had and one for missing values. Empty bins are floored at ``eps`` so the log term stays
finite. The gates compute PSI on DataFrames; the monitor aggregates the same bins in SQL over the
prediction log (``numeric_bin_counts_sql``), so both give the same number for the same data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

MISSING = "__missing__"
EPS = 1e-4


def _smoothed(counts: np.ndarray, eps: float) -> np.ndarray:
    """Shares with empty bins floored at ``eps`` (then renormalised) so the log term stays finite."""
    shares = counts / counts.sum()
    floored: np.ndarray = np.maximum(shares, eps)
    normalised: np.ndarray = floored / floored.sum()
    return normalised


def psi_from_counts(reference: np.ndarray, current: np.ndarray, eps: float = EPS) -> float:
    p = _smoothed(np.asarray(reference, dtype=float), eps)
    q = _smoothed(np.asarray(current, dtype=float), eps)
    return float(np.sum((q - p) * np.log(q / p)))


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Interior bin edges at the reference's quantiles (ties collapse, so no bin is empty by design)."""
    values = reference[~np.isnan(reference)]
    if len(values) == 0:
        return np.array([])
    return np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))


def numeric_bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin ``(-inf, e1], ..., (ek, inf)`` plus a final bin for missing values."""
    values = np.asarray(values, dtype=float)
    missing = np.isnan(values)
    index = np.searchsorted(edges, values[~missing], side="left")
    counts = np.bincount(index, minlength=len(edges) + 1).astype(float)
    return np.append(counts, missing.sum())


def numeric_bin_counts_sql(expr: str, edges: np.ndarray, rows: str = "true") -> list[str]:
    """DuckDB aggregates giving ``numeric_bin_counts`` over the rows where ``rows`` holds."""
    cuts = [float(e) for e in edges]
    if not cuts:
        return [
            f"count({expr}) filter (where {rows})",
            f"count(*) filter (where {rows} and {expr} is null)",
        ]
    parts = [f"count(*) filter (where {rows} and {expr} <= {cuts[0]!r})"]
    parts += [
        f"count(*) filter (where {rows} and {expr} > {lo!r} and {expr} <= {hi!r})"
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)
    ]
    parts.append(f"count(*) filter (where {rows} and {expr} > {cuts[-1]!r})")
    parts.append(f"count(*) filter (where {rows} and {expr} is null)")
    return parts


def categorical_bin_counts(
    values: Sequence[object] | pd.Series, levels: Sequence[str]
) -> np.ndarray:
    """Counts per reference level, then one bin for levels never seen in the reference, then missing."""
    series = pd.Series(values, dtype=object)
    missing = series.isna()
    counts = series[~missing].astype(str).value_counts()
    return categorical_counts_from(
        {str(k): int(v) for k, v in counts.items()}, int(missing.sum()), levels
    )


def categorical_counts_from(
    counts: dict[str, int], missing: int, levels: Sequence[str]
) -> np.ndarray:
    """The categorical bins from value counts (e.g. a SQL group-by) and a count of missing values."""
    known = set(levels)
    unseen = sum(n for value, n in counts.items() if value not in known)
    return np.array(
        [*(float(counts.get(level, 0)) for level in levels), float(unseen), float(missing)]
    )


def reference_levels(reference: pd.Series) -> list[str]:
    return sorted(reference.dropna().astype(str).unique())


def is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def population_stability_index(
    reference: pd.Series, current: pd.Series, bins: int = 10, eps: float = EPS
) -> float:
    """PSI of one feature: quantile bins from the reference for numbers, levels for categories."""
    if is_numeric(reference):
        ref = reference.to_numpy(dtype=float, na_value=np.nan)
        edges = quantile_edges(ref, bins)
        cur = current.to_numpy(dtype=float, na_value=np.nan)
        return psi_from_counts(numeric_bin_counts(ref, edges), numeric_bin_counts(cur, edges), eps)
    levels = reference_levels(reference)
    return psi_from_counts(
        categorical_bin_counts(reference, levels), categorical_bin_counts(current, levels), eps
    )


def chi_squared_p_value(reference: np.ndarray, current: np.ndarray) -> float:
    """p-value of a chi-squared test that both count vectors (the same bins) come from one
    distribution: sample-size aware, where PSI is not. Bins empty on both sides are dropped."""
    from scipy.stats import chi2_contingency

    table = np.vstack([np.asarray(reference, dtype=float), np.asarray(current, dtype=float)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    return float(chi2_contingency(table, correction=False).pvalue)
