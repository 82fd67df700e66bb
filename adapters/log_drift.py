"""PSI of a logged window against the champion's reference, aggregated in DuckDB over every row.

The bins are ``churn.drift``'s (reference quantile edges, levels + unseen + missing); the SQL form
of the numeric bins is generated from the same edges, so the number equals the gates' pandas PSI.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adapters.prediction_log import as_model_sees
from churn import drift
from churn.contracts import Drift, Reference


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def measure(con: Any, reference: Reference, bins: int, table: str = "preds") -> Drift:
    """PSI per feature over the rows that carry it (an older model version's log may lack some), the
    rows carrying each feature, and the PSI of the predicted probability.

    Each JSON line is parsed once for all features; the numeric bins of every feature and of the
    prediction come from one aggregate pass, the categorical levels from one group-by each."""
    names = list(reference.features)
    paths = ["$." + '"' + n.replace('"', '\\"') + '"' for n in names]
    con.execute(
        "create or replace temp table feature_values as select json_extract_string(features, $paths) as v, "
        f"json_keys(features) as k, probability from {table}",
        {"paths": paths},
    )
    has = {n: f"list_contains(k, {_literal(n)})" for n in names}
    value = {n: f"v[{i + 1}]" for i, n in enumerate(names)}
    aggregates = [f"count(*) filter (where {has[n]})" for n in names]
    spans: dict[str, tuple[int, int]] = {}
    edges_of: dict[str, np.ndarray] = {}
    for name in [n for n in names if reference.features[n] != "str"] + ["probability"]:
        edges_of[name] = drift.quantile_edges(
            reference.frame[name].to_numpy(dtype=float, na_value=np.nan), bins
        )
        expr, rows = (
            ("probability", "true")
            if name == "probability"
            else (as_model_sees(value[name], reference.features[name]), has[name])
        )
        parts = drift.numeric_bin_counts_sql(expr, edges_of[name], rows)
        spans[name] = (len(aggregates), len(aggregates) + len(parts))
        aggregates += parts
    totals = con.execute(f"select {', '.join(aggregates)} from feature_values").fetchall()[0]
    carried = {n: int(c) for n, c in zip(names, totals[: len(names)], strict=True)}

    def numeric_bins(name: str) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = spans[name]
        ref = reference.frame[name].to_numpy(dtype=float, na_value=np.nan)
        return drift.numeric_bin_counts(ref, edges_of[name]), np.array(totals[lo:hi], dtype=float)

    def categorical_bins(name: str) -> tuple[np.ndarray, np.ndarray]:
        levels = drift.reference_levels(reference.frame[name])
        sql = f"select {value[name]}, count(*) from feature_values where {has[name]} group by 1"
        counts = dict(con.execute(sql).fetchall())
        missing = counts.pop(None, 0)
        return (
            drift.categorical_bin_counts(reference.frame[name], levels),
            drift.categorical_counts_from(counts, missing, levels),
        )

    psi, p_values = {}, {}
    for name in names:
        if carried[name] == 0:
            continue
        ref_counts, cur_counts = numeric_bins(name) if name in spans else categorical_bins(name)
        psi[name] = drift.psi_from_counts(ref_counts, cur_counts)
        p_values[name] = drift.chi_squared_p_value(ref_counts, cur_counts)
    lo, hi = spans["probability"]
    prediction_psi = (
        drift.psi_from_counts(*numeric_bins("probability")) if sum(totals[lo:hi]) else None
    )
    return Drift(psi=psi, carried=carried, prediction_psi=prediction_psi, p_values=p_values)
