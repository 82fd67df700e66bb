"""`churn repo check`: a feature repo checked end to end on a small sample, in seconds, without Prefect.

Loads the repo, reads every source's declared columns, builds the as-of schedule, runs population.sql,
label.sql and every view on a sample of entities and dates, checks each view's .yml contract (columns,
dtypes, and on the sample its nulls, ranges and values), and guards point-in-time correctness: each view
evaluated with only the rows known before each as-of must give exactly what it gives with all rows.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import duckdb

from adapters import feature_engine as engine
from churn.featurestore import AS_OF, FeatureRepo, FeatureRepoError, as_of_schedule, online_as_of
from churn.settings import Settings

Status = Literal["ok", "WARN", "FAIL", "SKIP"]


@dataclass(frozen=True)
class CheckRow:
    check: str
    status: Status
    detail: str
    seconds: float


class _Stop(Exception):
    """A check failed that later checks depend on."""


def _sample_dates(schedule: list[datetime], count: int) -> list[datetime]:
    """The first, last and evenly spaced as-of dates in between."""
    if len(schedule) <= count:
        return schedule
    step = (len(schedule) - 1) / (count - 1)
    return sorted({schedule[round(i * step)] for i in range(count)})


def check_repo(settings: Settings, entities: int = 200, dates: int = 3) -> list[CheckRow]:
    """Every check's row, in order; a failure that later checks depend on ends the list."""
    rows: list[CheckRow] = []

    def run(name: str, body: Callable[[], tuple[Status, str]], fatal: bool = True) -> None:
        started = time.perf_counter()
        try:
            status, detail = body()
        except (FeatureRepoError, engine.FeatureBuildError, duckdb.Error) as exc:
            status, detail = (
                "FAIL",
                " ".join(str(exc).split()),
            )  # one line (DuckDB adds a caret diagram)
        rows.append(CheckRow(name, status, detail, time.perf_counter() - started))
        if status == "FAIL" and fatal:
            raise _Stop

    with contextlib.suppress(_Stop):
        _checks(settings, run, entities, dates)
    return rows


def _checks(settings: Settings, run: Callable[..., None], entities: int, dates: int) -> None:
    state: dict[str, Any] = {}

    def load() -> tuple[Status, str]:
        state["repo"] = repo = engine.load_feature_repo(settings.feature_repo)
        return "ok", f"{repo.root}: {len(repo.views)} views, {len(repo.feature_columns)} features"

    def resolve() -> tuple[Status, str]:
        state["sources"] = engine.resolve_sources(state["repo"], settings.raw_dir)
        return "ok", f"{len(state['sources'])} sources under {settings.raw_dir}"

    run("feature repo", load)
    run("source files", resolve)
    repo: FeatureRepo = state["repo"]
    with engine.connect(settings) as con:
        for source in state["sources"]:

            def register(source: engine.SourceFiles = source) -> tuple[Status, str]:
                engine.register_sources(con, repo, [source])
                count = con.execute(f'select count(*) from "{source.name}"').fetchall()[0][0]
                columns = len(repo.config.sources[source.name].columns)
                return (
                    "ok",
                    f"{count:,} rows in {len(source.files)} file(s), {columns} declared columns as typed",
                )

            run(f"source {source.name}", register)

        def schedule() -> tuple[Status, str]:
            bounds = engine.data_bounds(con, repo)
            planned = as_of_schedule(repo.config.spine, bounds.covered_from, bounds.covered_to)
            state["dates"] = _sample_dates(planned, dates)
            state["online"] = online_as_of(repo.config.spine, bounds.covered_to)
            return "ok", (
                f"{len(planned)} training as-of dates {planned[0]:%Y-%m-%d}..{planned[-1]:%Y-%m-%d}, "
                f"online as of {state['online']:%Y-%m-%d}; sampling {len(state['dates'])} dates"
            )

        run("as-of schedule", schedule)
        run("population.sql (sample)", lambda: _population(con, repo, state, entities))
        run("label.sql (sample)", lambda: _label(con, repo))
        for view in repo.views:
            run(f"view {view.name}", lambda view=view: _view(con, repo, view), fatal=False)
        run("point-in-time guard", lambda: _pit_guard(con, repo, state), fatal=False)


def _population(
    con: duckdb.DuckDBPyConnection, repo: FeatureRepo, state: dict[str, Any], entities: int
) -> tuple[Status, str]:
    """The spine at the sampled dates, cut to a fixed sample of entities (by hash, so reruns agree)."""
    entity = repo.config.entity
    engine.build_spine(con, repo, [*state["dates"], state["online"]], with_label=False)
    con.execute(
        f'create or replace temp table sampled as select distinct "{entity}" from population '
        f'order by hash("{entity}") limit {int(entities)}'
    )
    con.execute(
        f'create or replace temp table full_spine as select * from population semi join sampled using ("{entity}")'
    )
    con.execute(
        "create or replace temp table spine as select * from full_spine where as_of in $dates",
        {"dates": state["dates"]},
    )
    rows = con.execute("select count(*), count(distinct as_of) from spine").fetchall()[0]
    state["entities"] = con.execute("select count(*) from sampled").fetchall()[0][0]
    if rows[0] == 0:
        return (
            "FAIL",
            f"{repo.root}/population.sql: no entity is eligible at the sampled training dates",
        )
    return "ok", f"{state['entities']} entities x {rows[1]} training dates = {rows[0]} spine rows"


def _label(con: duckdb.DuckDBPyConnection, repo: FeatureRepo) -> tuple[Status, str]:
    label = repo.config.label
    engine.attach_labels(con, repo)
    total, positive = con.execute(f'select count(*), sum("{label}") from spine').fetchall()[0]
    share = (positive or 0) / total
    status: Status = "ok" if 0 < share < 1 else "WARN"
    note = "" if status == "ok" else ": a single class in the sample; training needs both"
    return status, f"0/1 integers, {share:.1%} positive in {total} sampled rows{note}"


def _view(con: duckdb.DuckDBPyConnection, repo: FeatureRepo, view: Any) -> tuple[Status, str]:
    table = engine.evaluate_view(con, repo, view)
    problems = []
    for column in view.spec.columns:
        name = f'"{column.name}"'
        if not column.nullable:
            nulls = con.execute(f"select count(*) from {table} where {name} is null").fetchall()[0][
                0
            ]
            if nulls:
                problems.append(f"{column.name}: {nulls} nulls but nullable: false")
        for bound, op in ((column.min, "<"), (column.max, ">")):
            if bound is not None:
                bad = con.execute(
                    f"select count(*) from {table} where {name} {op} {bound!r}"
                ).fetchall()[0][0]
                if bad:
                    problems.append(
                        f"{column.name}: {bad} values {'below min' if op == '<' else 'above max'} {bound}"
                    )
        if column.values is not None:
            bad = con.execute(
                f"select count(*) from {table} where {name} not in $values",
                {"values": column.values},
            ).fetchall()[0][0]
            if bad:
                problems.append(f"{column.name}: {bad} values outside {column.values}")
    if problems:
        return "WARN", f"{view.path}: " + "; ".join(problems) + " (on the sample)"
    return "ok", f"{len(view.spec.columns)} columns as {view.name}.yml declares"


def _pit_guard(
    con: duckdb.DuckDBPyConnection, repo: FeatureRepo, state: dict[str, Any]
) -> tuple[Status, str]:
    """Every view at each sampled as-of, once over all rows and once over only the rows whose event and
    arrival times are before that as-of: any difference means the view reads the future."""
    timed = {name: spec for name, spec in repo.config.sources.items() if spec.event_ts}
    if not timed:
        return "SKIP", "no source has event_ts (snapshot data): nothing can leak from the future"
    entity = repo.config.entity
    files = {source.name: list(source.files) for source in state["sources"]}
    for name in (
        timed
    ):  # the unfiltered source under its own name: views bind late, so not a view of a view
        con.read_parquet(files[name], union_by_name=True).create_view(f"__all_{name}", replace=True)
    leaks: dict[str, int] = {}
    try:
        for as_of in state["dates"]:
            con.execute(
                "create or replace temp table spine as select * from full_spine where as_of = $d",
                {"d": as_of},
            )
            full = {
                v.name: con.execute(f"select * from {engine.evaluate_view(con, repo, v)}").df()
                for v in repo.views
            }
            cutoff = f"timestamp '{as_of:%Y-%m-%d %H:%M:%S}'"  # a view cannot take a parameter
            for name, spec in timed.items():
                known = " and ".join(
                    f'"{c}" < {cutoff}' for c in (spec.event_ts, spec.arrival_ts) if c
                )
                con.execute(
                    f'create or replace view "{name}" as select * from "__all_{name}" where {known}'
                )
            for view in repo.views:
                before = con.execute(f"select * from {engine.evaluate_view(con, repo, view)}").df()
                differing = _differing_rows(full[view.name], before, [entity, AS_OF])
                if differing:
                    leaks[view.name] = leaks.get(view.name, 0) + differing
            for name in timed:
                con.execute(f'create or replace view "{name}" as select * from "__all_{name}"')
    finally:
        for name in timed:
            con.execute(f'create or replace view "{name}" as select * from "__all_{name}"')
    if leaks:
        detail = ", ".join(f"{v} ({n} rows differ)" for v, n in sorted(leaks.items()))
        return "FAIL", (
            f"views read rows at or after as_of (by event_ts or arrival_ts): {detail}; "
            "filter every source with event_ts < s.as_of and arrival_ts < s.as_of"
        )
    return (
        "ok",
        f"{len(repo.views)} views unchanged with only the rows known before each of {len(state['dates'])} as-of dates",
    )


def _differing_rows(a: Any, b: Any, keys: list[str]) -> int:
    """Rows whose values differ (numbers beyond a relative 1e-9) between two frames keyed alike."""
    import numpy as np

    merged = a.merge(b, on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)
    differs = merged["_merge"] != "both"
    for column in [c for c in a.columns if c not in keys]:
        left, right = merged[f"{column}_a"], merged[f"{column}_b"]
        both_missing = left.isna() & right.isna()
        try:
            close = np.isclose(left.astype(float), right.astype(float), rtol=1e-9, atol=1e-12)
        except (TypeError, ValueError):
            close = (left == right).to_numpy()
        differs |= ~(both_missing | close)
    return int(differs.sum())
