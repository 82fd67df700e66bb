"""DuckDB feature engine: read the feature repo, check sources, evaluate views against a spine.

Plain functions (no Prefect) so the CLI, benchmarks, monitor and tests use exactly what the flow uses.
Every view is evaluated against a ``spine(<entity>, as_of)`` relation: the labelled training spine
or the "every active entity, now" online spine. Same SQL, two spines.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd

from adapters import object_store
from churn.contracts import CheckedSources, DataBounds, Partition, SourceSummary
from churn.featurestore import (
    AS_OF,
    FeatureRepo,
    FeatureRepoError,
    FeatureView,
    build_repo,
    dtype_accepts,
    parse_store_config,
    parse_view,
)
from churn.params import PipelineConfig, parse_pipeline_config
from churn.settings import Location, Settings, is_url


class FeatureBuildError(RuntimeError):
    """A source, the spine or a view failed a check; the message names the file, view and column."""


@dataclass(frozen=True)
class SourceFiles:
    name: str
    files: tuple[str, ...]


def load_feature_repo(root: Path) -> FeatureRepo:
    """Read ``feature_store.yml``, the spine SQL and every view pair under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FeatureRepoError(f"feature repo {root} does not exist (set CHURN_FEATURE_REPO)")

    def read(name: str) -> str:
        path = root / name
        if not path.is_file():
            raise FeatureRepoError(
                f"{path}: missing (a feature repo needs it; see README 'Bring your own data')"
            )
        return path.read_text()

    config = parse_store_config(read("feature_store.yml"), str(root / "feature_store.yml"))
    views_dir = root / "views"
    sql_files = sorted(views_dir.glob("*.sql"))
    yml_files = sorted(views_dir.glob("*.yml"))
    orphans = {p.stem for p in yml_files} - {p.stem for p in sql_files}
    if orphans:
        raise FeatureRepoError(f"{views_dir}: metadata without SQL: {sorted(orphans)}")
    views = []
    for sql_path in sql_files:
        yml_path = sql_path.with_suffix(".yml")
        if not yml_path.is_file():
            raise FeatureRepoError(
                f"{sql_path}: view has no sibling {yml_path.name} (name, entity, columns)"
            )
        where = str(sql_path.with_suffix(""))
        views.append(parse_view(sql_path.stem, sql_path.read_text(), yml_path.read_text(), where))
    return build_repo(config, read("population.sql"), read("label.sql"), views, str(root))


def connect(settings: Settings) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with explicit threads, memory limit and a spill directory under CHURN_HOME."""
    spill = settings.duckdb_tmp
    spill.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(
        config={
            "threads": settings.duckdb_threads,
            "memory_limit": settings.duckdb_memory_limit,
            "temp_directory": str(spill),
            "preserve_insertion_order": False,
        }
    )


def resolve_sources(repo: FeatureRepo, raw_dir: Location) -> list[SourceFiles]:
    """The files behind each source, or an error naming the source and the path that matched nothing.
    With ``raw_dir`` an object-store URL, relative source paths are matched against its objects."""
    resolved = []
    for name, spec in repo.config.sources.items():
        if Path(spec.path).is_absolute() or is_url(spec.path):
            pattern = spec.path
        else:
            pattern = str(object_store.join(raw_dir, spec.path))
        found = object_store.glob(pattern) if is_url(pattern) else glob.glob(pattern)
        files = tuple(sorted(found))
        if not files:
            raise FeatureBuildError(
                f"source {name!r}: no file matches {pattern} (feature_store.yml sources.{name}.path)"
            )
        resolved.append(SourceFiles(name, files))
    return resolved


def register_sources(
    con: duckdb.DuckDBPyConnection, repo: FeatureRepo, sources: list[SourceFiles]
) -> None:
    """Expose each source as a view of its name, after checking every declared column and type."""
    for src in sources:
        spec = repo.config.sources[src.name]
        object_store.register(con, list(src.files))
        try:
            rel = con.read_parquet(list(src.files), union_by_name=True)
        except duckdb.Error as exc:
            raise FeatureBuildError(
                f"source {src.name!r}: cannot read {src.files[0]}: {exc}"
            ) from exc
        actual = dict(zip(rel.columns, (str(t) for t in rel.types)))
        problems = []
        for column, dtype in spec.columns.items():
            if column not in actual:
                problems.append(f"missing column {column!r}; expected {dtype}")
            elif not dtype_accepts(dtype, actual[column]):
                problems.append(f"column {column!r} has type {actual[column]}; expected {dtype}")
        if problems:
            raise FeatureBuildError(f"source {src.name!r} ({src.files[0]}): " + "; ".join(problems))
        rel.create_view(src.name, replace=True)


def data_bounds(con: duckdb.DuckDBPyConnection, repo: FeatureRepo) -> DataBounds:
    firsts, lasts, known = [], [], []
    for name, spec in repo.config.sources.items():
        if spec.event_ts is None:
            continue
        arrival = spec.arrival_ts or spec.event_ts
        first, last, seen = con.execute(
            f'select min("{spec.event_ts}")::timestamp, max("{spec.event_ts}")::timestamp, '
            f'max("{arrival}")::timestamp from "{name}"'
        ).fetchall()[0]
        if first is None:
            raise FeatureBuildError(f"source {name!r}: no rows with a {spec.event_ts!r} value")
        firsts.append(first)
        lasts.append(last)
        known.append(seen)
    if not firsts:  # snapshot data: no event history
        at = repo.config.spine.snapshot_at
        return DataBounds(at, at, at)
    return DataBounds(max(firsts), max(lasts), max(known))


def _bind(sql: str, params: dict[str, object]) -> dict[str, object]:
    """DuckDB rejects unused named parameters: bind only the ``$name`` ones the SQL mentions."""
    return {k: v for k, v in params.items() if re.search(rf"\${k}\b", sql)}


def _materialise(
    con: duckdb.DuckDBPyConnection, table: str, sql: str, what: str, params: dict
) -> None:
    try:
        con.execute(f'create or replace temp table "{table}" as {sql}', _bind(sql, params))
    except duckdb.Error as exc:
        raise FeatureBuildError(f"{what}: SQL failed: {exc}") from exc


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rel = con.table(table)
    return dict(zip(rel.columns, (str(t) for t in rel.types)))


def _check_keys(con: duckdb.DuckDBPyConnection, table: str, entity: str, what: str) -> None:
    dup = con.execute(
        f'select "{entity}", {AS_OF}, count(*) as n from "{table}" group by all having count(*) > 1 limit 3'
    ).fetchall()
    if dup:
        examples = ", ".join(f"({e!r}, {a}) x{n}" for e, a, n in dup)
        raise FeatureBuildError(f"{what}: duplicate ({entity}, as_of) rows, e.g. {examples}")


def build_spine(
    con: duckdb.DuckDBPyConnection,
    repo: FeatureRepo,
    as_of_dates: list[datetime],
    with_label: bool,
    partition: Partition | None = None,
) -> int:
    """Create the temp table ``spine`` from population.sql (and label.sql); return its row count.

    With a ``partition`` of more than one, the whole population is built and checked, then only the
    rows whose entity hashes to it are kept (DuckDB's ``hash()``, for integer and string ids alike):
    label.sql and every view then see those rows only. An empty partition is not an error.
    """
    cfg = repo.config
    entity = cfg.entity
    dates = pd.DataFrame({AS_OF: pd.to_datetime(sorted(set(as_of_dates))).astype("datetime64[us]")})
    con.register("as_of_dates_input", dates)
    con.execute(
        f"create or replace temp table as_of_dates as select {AS_OF}::timestamp as {AS_OF} from as_of_dates_input"
    )
    params = {"horizon_days": cfg.spine.horizon_days}
    where = f"{repo.root}/population.sql"
    _materialise(con, "population", repo.population_sql, where, params)
    cols = _columns(con, "population")
    if set(cols) != {entity, AS_OF}:
        raise FeatureBuildError(
            f"{where}: must return exactly ({entity}, {AS_OF}); got {list(cols)}"
        )
    _check_entity_dtype(con, "population", entity, cfg.entity_dtype, where)
    _check_keys(con, "population", entity, where)
    n = con.execute("select count(*) from population").fetchall()[0][0]
    if n == 0:
        raise FeatureBuildError(
            f"{where}: empty spine: no {entity} is eligible at any of {len(as_of_dates)} as-of dates "
            f"({min(as_of_dates)} .. {max(as_of_dates)})"
        )
    if partition is None or partition.count == 1:
        con.execute(
            f'create or replace temp table spine as select "{entity}", {AS_OF} from population'
        )
    else:
        con.execute(
            f'create or replace temp table spine as select "{entity}", {AS_OF} from population '
            f'where hash("{entity}") % $count = $index',
            {"count": partition.count, "index": partition.index},
        )
        n = con.execute("select count(*) from spine").fetchall()[0][0]
    if with_label:
        attach_labels(con, repo)
    return n


def attach_labels(con: duckdb.DuckDBPyConnection, repo: FeatureRepo) -> None:
    """label.sql over the temp table ``spine``, checked (keys, 0/1 integers, one per spine row), then
    joined onto it: ``spine`` becomes (entity, as_of, label)."""
    cfg = repo.config
    entity = cfg.entity
    where = f"{repo.root}/label.sql"
    evaluate_labels(con, repo)
    cols = _columns(con, "labels")
    expected = {entity, AS_OF, cfg.label}
    if set(cols) != expected:
        raise FeatureBuildError(
            f"{where}: must return exactly {sorted(expected)}; got {list(cols)}"
        )
    _check_keys(con, "labels", entity, where)
    _check_label_dtype(con, cfg.label, where)
    bad = con.execute(
        f'select count(*) filter (where "{cfg.label}" is null), '
        f'count(*) filter (where "{cfg.label}" not in (0, 1)) from labels'
    ).fetchall()[0]
    if bad[0] or bad[1]:
        raise FeatureBuildError(
            f"{where}: label {cfg.label!r} must be 0 or 1: {bad[0]} null, {bad[1]} other values"
        )
    missing = con.execute(
        f'select count(*) from spine s anti join labels l using ("{entity}", {AS_OF})'
    ).fetchall()[0][0]
    if missing:
        raise FeatureBuildError(f"{where}: {missing} spine rows have no label row")
    con.execute(
        f'create or replace temp table spine as select s."{entity}", s.{AS_OF}, l."{cfg.label}" '
        f'from spine s join labels l using ("{entity}", {AS_OF})'
    )


def _examples(con: duckdb.DuckDBPyConnection, table: str, column: str) -> str:
    """Up to three distinct values of a column, sorted, strings quoted: for error messages."""
    values = con.execute(
        f'select distinct "{column}" from "{table}" where "{column}" is not null order by 1 limit 3'
    ).fetchall()
    return ", ".join(repr(v) if isinstance(v, str) else str(v) for (v,) in values)


def _check_label_dtype(con: duckdb.DuckDBPyConnection, label: str, where: str) -> None:
    """The label must be a 0/1 integer column; anything else gets one error saying how to map it."""
    dtype = _columns(con, "labels")[label]
    if dtype_accepts("int64", dtype) or dtype == "UBIGINT":  # an integer column of any width
        return
    examples = _examples(con, "labels", label)
    if dtype == "BOOLEAN":
        how = f'cast("{label}" as integer) as "{label}"'
    elif dtype == "VARCHAR":
        how = f'case when "{label}" = <the positive value> then 1 else 0 end as "{label}"'
    else:
        how = f'cast(round("{label}") as integer) as "{label}"'
    raise FeatureBuildError(
        f"{where}: label column {label!r} is {dtype} (e.g. {examples}); it must be 0/1 integers: "
        f"map it in label.sql, e.g. select ..., {how}"
    )


def _check_entity_dtype(
    con: duckdb.DuckDBPyConnection, table: str, entity: str, declared: str, where: str
) -> None:
    """The entity column must have the type feature_store.yml declares (entity_dtype)."""
    dtype = _columns(con, table)[entity]
    if dtype_accepts(declared, dtype):
        return
    examples = _examples(con, table, entity)
    cast = "bigint" if declared == "int64" else "varchar"
    raise FeatureBuildError(
        f"{where}: entity column {entity!r} is {dtype} (e.g. {examples}) but feature_store.yml declares "
        f'entity_dtype: {declared}; set entity_dtype to match the data, or select cast("{entity}" as {cast})'
    )


def evaluate_labels(con: duckdb.DuckDBPyConnection, repo: FeatureRepo) -> None:
    """Temp table ``labels`` from label.sql over the temp table ``spine`` (entity, as_of)."""
    _materialise(
        con,
        "labels",
        repo.label_sql,
        f"{repo.root}/label.sql",
        {"horizon_days": repo.config.spine.horizon_days},
    )


def evaluate_view(con: duckdb.DuckDBPyConnection, repo: FeatureRepo, view: FeatureView) -> str:
    """Temp table ``view_<name>`` of one view against ``spine``, checked against its .yml; returns its name."""
    entity = repo.config.entity
    table = f"view_{view.name}"
    what = f"view {view.name!r} ({view.path})"
    _materialise(con, table, view.sql, what, {"horizon_days": repo.config.spine.horizon_days})
    actual = _columns(con, table)
    expected = {c.name: c.dtype for c in view.spec.columns}
    problems = [f"missing key column {k!r}" for k in (entity, AS_OF) if k not in actual]
    for name, dtype in expected.items():
        if name not in actual:
            problems.append(f"column {name!r} is in {view.name}.yml but not returned by the SQL")
        elif not dtype_accepts(dtype, actual[name]):
            problems.append(
                f"column {name!r} is {actual[name]} but {view.name}.yml declares {dtype}"
            )
    extra = [c for c in actual if c not in expected and c not in (entity, AS_OF)]
    problems += [
        f"column {c!r} is returned by the SQL but not declared in {view.name}.yml" for c in extra
    ]
    if problems:
        raise FeatureBuildError(f"{what}: " + "; ".join(problems))
    _check_keys(con, table, entity, what)
    return table


def evaluate_views(con: duckdb.DuckDBPyConnection, repo: FeatureRepo) -> duckdb.DuckDBPyRelation:
    """Evaluate every view against ``spine``, check it against its .yml, and join all onto the spine."""
    entity = repo.config.entity
    selects, joins = [], []
    for i, view in enumerate(repo.views):
        table = evaluate_view(con, repo, view)
        alias = f"v{i}"
        selects += [f'{alias}."{c.name}"' for c in view.spec.columns]
        joins.append(
            f'left join "{table}" as {alias} on {alias}."{entity}" = s."{entity}" and {alias}.{AS_OF} = s.{AS_OF}'
        )
    return con.sql(f"select s.*, {', '.join(selects)} from spine as s {' '.join(joins)}")


def file_digest(path: str) -> str:
    """sha256 of a file's (or object's) bytes."""
    return object_store.digest(path)


def read_source(files: tuple[str, ...] | list[str]) -> pd.DataFrame:
    """A source's files (or objects) as one frame."""
    if any(is_url(f) for f in files):
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return pd.read_parquet(list(files))


def check_sources(settings: Settings, repo: FeatureRepo) -> CheckedSources:
    """Every source exists with its declared columns and types: row counts, file digests, data bounds."""
    sources = resolve_sources(repo, settings.raw_dir)
    with connect(settings) as con:
        register_sources(con, repo, sources)
        bounds = data_bounds(con, repo)
        rows = {
            s.name: con.execute(f'select count(*) from "{s.name}"').fetchall()[0][0]
            for s in sources
        }
    summaries = {
        s.name: SourceSummary(rows=rows[s.name], files={f: file_digest(f) for f in s.files})
        for s in sources
    }
    return CheckedSources(sources=summaries, bounds=bounds)


def write_features(
    settings: Settings,
    repo: FeatureRepo,
    as_of_dates: list[datetime],
    with_label: bool,
    out: Path,
    raw_dir: Location | None = None,
    partition: Partition | None = None,
) -> tuple[int, int]:
    """Write the feature rows of the spine at ``as_of_dates`` to ``out``; return (rows, positive labels).

    Views are checked to give at most one row per spine row and are left-joined onto it, so the
    output has exactly the spine's rows: both counts come from the spine, not from re-reading ``out``.
    With a ``partition``, only the spine rows of that hash partition, on a connection of its own
    (``duckdb_threads``, ``duckdb_memory_limit``, spilling under ``duckdb_tmp``): each partition's
    peak memory is bounded as the whole build's is. Rows are ordered by as-of, then entity.
    """
    with connect(settings) as con:
        register_sources(con, repo, resolve_sources(repo, raw_dir or settings.raw_dir))
        rows = build_spine(con, repo, as_of_dates, with_label=with_label, partition=partition)
        evaluate_views(con, repo).order(f'as_of, "{repo.config.entity}"').write_parquet(str(out))
        positives = (
            con.execute(f'select sum("{repo.config.label}") from spine').fetchall()[0][0]
            if with_label
            else 0
        )
        return rows, int(positives or 0)


def features_at(
    settings: Settings, repo: FeatureRepo, raw_dir: Location, as_of: datetime
) -> pd.DataFrame:
    """Every eligible entity's features at ``as_of``, from the repo's own SQL over ``raw_dir``."""
    with connect(settings) as con:
        register_sources(con, repo, resolve_sources(repo, raw_dir))
        build_spine(con, repo, [as_of], with_label=False)
        return evaluate_views(con, repo).df()


PIPELINE_FILE = "pipeline.yml"


def load_pipeline_config(root: Path) -> PipelineConfig:
    """The repo's ``pipeline.yml`` (train and monitor defaults), or no defaults when it has none."""
    path = Path(root) / PIPELINE_FILE
    return (
        parse_pipeline_config(path.read_text(), str(path)) if path.is_file() else PipelineConfig()
    )
