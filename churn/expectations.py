"""Great Expectations suites generated from the feature repo's metadata, as plain JSON dicts.

One suite per source (``source.<name>``), one for the training set and one for the online snapshot.
Generated expectations carry ``meta.generated: true``; anything else in a suite file is hand-tuned
and kept when the suite is regenerated. ``meta.metadata_sha`` pins the metadata a suite came from,
so a suite that no longer matches its source or views is detected (test and run time).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from churn.featurestore import AS_OF, ColumnSpec, FeatureRepo

NOT_IN_SUITES = {"drift", "drift_reason"}
"""Column metadata the suites do not depend on: changing it does not make a suite stale."""

Suite = dict[str, Any]
"""A suite or an expectation as the JSON GX reads (type, kwargs, meta)."""

TRAINING_SET = "training_set"
ONLINE_SNAPSHOT = "online_snapshot"

# pandas dtype names per declared dtype (GX's type-list check mis-handles pandas 3 "str": use of_type)
_PANDAS_TYPES = {
    "int64": ["int64", "int32", "int16", "int8", "Int64"],
    "float64": ["float64", "float32", "Float64"],
    "timestamp": ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"],
    "date": ["date", "object", "datetime64[s]", "datetime64[ms]", "date32[day][pyarrow]"],
    "bool": ["bool", "boolean"],
}


def _exp(kind: str, **kwargs: Any) -> Suite:
    return {"type": kind, "kwargs": kwargs, "meta": {"generated": True}}


def _type_check(column: str, dtype: str) -> Suite:
    if dtype == "str":
        return _exp("expect_column_values_to_be_of_type", column=column, type_="str")
    return _exp(
        "expect_column_values_to_be_in_type_list", column=column, type_list=_PANDAS_TYPES[dtype]
    )


def _column_checks(col: ColumnSpec) -> list[Suite]:
    out = [_exp("expect_column_to_exist", column=col.name), _type_check(col.name, col.dtype)]
    if not col.nullable:
        out.append(_exp("expect_column_values_to_not_be_null", column=col.name))
    if col.min is not None or col.max is not None:
        out.append(
            _exp(
                "expect_column_values_to_be_between",
                column=col.name,
                min_value=col.min,
                max_value=col.max,
            )
        )
    if col.values is not None:
        out.append(_exp("expect_column_values_to_be_in_set", column=col.name, value_set=col.values))
    return out


def _sha(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


def freshness_parameter(source: str) -> str:
    return f"freshness_min_{source}"


def generated_suites(repo: FeatureRepo) -> dict[str, Suite]:
    """Every suite the repo's metadata defines, keyed by suite name."""
    cfg = repo.config
    suites: dict[str, Suite] = {}
    for name, src in cfg.sources.items():
        exps = [_exp("expect_table_row_count_to_be_between", min_value=1, max_value=None)]
        for column, dtype in src.columns.items():
            exps += [_exp("expect_column_to_exist", column=column), _type_check(column, dtype)]
        required = [cfg.entity, src.event_ts, src.arrival_ts, *(src.unique_key or [])]
        for not_null in dict.fromkeys(c for c in required if c):
            exps.append(_exp("expect_column_values_to_not_be_null", column=not_null))
        if src.unique_key and len(src.unique_key) == 1:
            exps.append(_exp("expect_column_values_to_be_unique", column=src.unique_key[0]))
        elif src.unique_key:
            exps.append(_exp("expect_compound_columns_to_be_unique", column_list=src.unique_key))
        if src.max_staleness_days:
            exps.append(
                _exp(
                    "expect_column_max_to_be_between",
                    column=src.event_ts,
                    min_value={"$PARAMETER": freshness_parameter(name)},
                    max_value=None,
                )
            )
        suites[f"source.{name}"] = _suite(f"source.{name}", exps, src.model_dump())

    columns = repo.feature_columns
    key = [cfg.entity, AS_OF]
    base = [_exp("expect_table_row_count_to_be_between", min_value=1, max_value=None)]
    base += [
        e
        for k in key
        for e in (
            _exp("expect_column_to_exist", column=k),
            _exp("expect_column_values_to_not_be_null", column=k),
        )
    ]
    base.append(_exp("expect_compound_columns_to_be_unique", column_list=key))
    features = [e for col in columns for e in _column_checks(col)]
    metadata = {
        "entity": cfg.entity,
        "label": cfg.label,
        "columns": [c.model_dump(exclude=NOT_IN_SUITES) for c in columns],
    }
    label = [
        _exp("expect_column_to_exist", column=cfg.label),
        _exp("expect_column_values_to_not_be_null", column=cfg.label),
        _exp("expect_column_values_to_be_in_set", column=cfg.label, value_set=[0, 1]),
    ]
    suites[TRAINING_SET] = _suite(TRAINING_SET, base + label + features, metadata)
    suites[ONLINE_SNAPSHOT] = _suite(ONLINE_SNAPSHOT, base + features, metadata)
    return suites


def _suite(name: str, expectations: list[Suite], metadata: Any) -> Suite:
    return {"name": name, "expectations": expectations, "meta": {"metadata_sha": _sha(metadata)}}


def merge(generated: Suite, existing: Suite | None) -> Suite:
    """Regenerate a suite, keeping the hand-tuned expectations (those without ``meta.generated``)."""
    kept = [
        e
        for e in (existing or {}).get("expectations", [])
        if not e.get("meta", {}).get("generated")
    ]
    return {**generated, "expectations": generated["expectations"] + kept}


def stale(suite: Suite, generated: Suite) -> bool:
    """A suite is stale when the metadata it was generated from has changed since."""
    return bool(suite.get("meta", {}).get("metadata_sha") != generated["meta"]["metadata_sha"])
