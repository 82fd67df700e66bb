"""Matured labels for logged predictions: the repo's own label.sql over the raw data.

A prediction's outcome is known once its ``as_of`` plus the label horizon lies inside the observed
data; only those predictions are labelled, with the same SQL that labels the training set.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

from adapters import feature_engine
from churn.featurestore import FeatureRepo
from churn.settings import Settings


def matured(settings: Settings, con: Any, *tables: str) -> list[tuple[pd.DataFrame, str]]:
    """For each of ``tables``: (probability, prediction, label) of its predictions whose outcome is
    known, and a note. The raw data is registered and its extent measured once for all of them."""
    repo = feature_engine.load_feature_repo(settings.feature_repo)
    try:
        sources = feature_engine.resolve_sources(repo, settings.raw_dir)
    except feature_engine.FeatureBuildError as exc:
        return [
            (pd.DataFrame(), f"no labels: the raw data is not readable ({exc})") for _ in tables
        ]
    feature_engine.register_sources(con, repo, sources)
    observed_until = feature_engine.data_bounds(con, repo).covered_to
    return [_labelled(con, repo, table, observed_until) for table in tables]


def _labelled(
    con: Any, repo: FeatureRepo, table: str, observed_until: datetime
) -> tuple[pd.DataFrame, str]:
    entity, horizon = repo.config.entity, repo.config.spine.horizon_days
    cast = "bigint" if repo.config.entity_dtype == "int64" else "varchar"
    con.execute(
        f'create or replace temp table spine as select distinct try_cast(entity_id as {cast}) as "{entity}", '
        f"as_of from {table} where as_of + to_days($h) <= $until and try_cast(entity_id as {cast}) is not null",
        {"h": horizon, "until": observed_until},
    )
    if con.execute("select count(*) from spine").fetchall()[0][0] == 0:
        return pd.DataFrame(), (
            f"no matured labels yet: outcomes are observed until {observed_until:%Y-%m-%d %H:%M}, "
            f"and a prediction's label needs {horizon} days after its as_of"
        )
    feature_engine.evaluate_labels(con, repo)
    frame = con.execute(
        f'select p.probability, p.prediction, l."{repo.config.label}" as label from {table} p '
        f'join labels l on l."{entity}" = try_cast(p.entity_id as {cast}) and l.as_of = p.as_of'
    ).df()
    return (
        frame,
        f"{len(frame)} predictions with matured labels (outcomes observed until {observed_until:%Y-%m-%d})",
    )
