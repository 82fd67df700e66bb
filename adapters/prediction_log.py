"""Reading the prediction log with DuckDB: one window of well-formed records, its metrics, a sample.

The record is ``churn.predictions``'; the files are JSON lines named by hour, so a window reads
only the files that can hold its rows. Malformed or truncated lines are skipped and counted. The
log may be a directory or an object-store URL (``s3://bucket/predictions``, the objects a fleet of
service replicas writes): then the objects of each hour are listed by their name's prefix, fetched
concurrently through fsspec (s3fs) into one local file, and DuckDB parses that as it parses the
files (``fetch_objects`` says why; DuckDB's own httpfs extension is not needed).
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from adapters import object_store
from churn.contracts import FeatureKind, Reference, WindowMetrics, WindowRead
from churn.predictions import FILE_NAME, HOUR_FORMAT
from churn.settings import Location, is_url

COLUMNS = (
    "ts timestamp, as_of timestamp, entity_id varchar, probability double, prediction integer, "
    "model_version varchar, latency_ms double, features json, request_id varchar"
)
TimeAxis = Literal["request", "as_of"]
AXIS_COLUMN: dict[str, str] = {"request": "ts", "as_of": "as_of"}
"""The window table: one row per well-formed record; ``entity_id`` is the record's entity value as text."""


def log_files(directory: Location, start: datetime, end: datetime) -> list[str]:
    """Hourly files that can hold rows of [start, end); files named otherwise are read too.
    On an object store: the objects whose name starts with one of those hours."""
    if is_url(directory):
        return _log_objects(str(directory), start, end)
    first, last = (start - timedelta(hours=1)).strftime(HOUR_FORMAT), end.strftime(HOUR_FORMAT)
    out = []
    for path in sorted(Path(directory).glob("*.jsonl")):
        match = FILE_NAME.match(path.name)
        if match is None or first <= match.group(1) <= last:
            out.append(str(path))
    return out


def all_log_files(directory: Location) -> list[str]:
    """Every file (object) of the log, whatever its hour."""
    if is_url(directory):
        return _log_objects(str(directory), None, None)
    return sorted(str(path) for path in Path(directory).glob("*.jsonl"))


def _hours(start: datetime, end: datetime) -> list[str]:
    hour = (start - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    out = []
    while hour <= end:
        out.append(hour.strftime(HOUR_FORMAT))
        hour += timedelta(hours=1)
    return out


def _log_objects(url: str, start: datetime | None, end: datetime | None) -> list[str]:
    """Objects under ``url``: one listing per hour of the window by key prefix (a store lists a
    prefix, not a pattern), or every object; as full URLs DuckDB opens through fsspec."""
    fs, root = object_store.filesystem(url)
    if not fs.exists(root.lstrip("/").split("/", 1)[0]):
        raise FileNotFoundError(f"the prediction log store {url}: its bucket does not exist")
    prefixes = [""] if start is None or end is None else _hours(start, end)
    found: list[str] = []
    for prefix in prefixes:
        if "s3" in fs.protocol:
            names = fs.find(root, prefix=prefix, maxdepth=1)
        else:
            names = fs.glob(f"{root}/{prefix}*.jsonl")
        found += [n for n in names if n.endswith(".jsonl")]
    return sorted(fs.unstrip_protocol(n) for n in dict.fromkeys(found))


def _json_key(name: str) -> str:
    return "'$.\"" + name.replace("'", "''").replace('"', '\\"') + "\"'"


def _read_lines(con: Any, files: list[str]) -> None:
    con.execute(
        "create or replace temp table lines as select line from read_csv($files, columns = {'line': 'VARCHAR'}, "
        "header = false, delim = chr(1), quote = '', escape = '', auto_detect = false) where line <> ''",
        {"files": files},
    )


FETCH_BATCH = 256
"""Objects fetched at once (s3fs runs a batch's GETs concurrently); bounds the bytes held in memory."""


def fetch_objects(url: str, objects: list[str], local: Path) -> str:
    """The objects' lines in one local file, fetched ``FETCH_BATCH`` at a time concurrently.

    DuckDB can open each ``s3://`` URL through the registered fsspec filesystem itself
    (``object_store.register``), but it does so one object after another, a HEAD and a GET each through
    Python: ~110 ms an object here, minutes for an hour of a fleet's small objects. Fetched
    concurrently, the same objects take a fraction of that (``benchmarks/prediction_log_store.py``).
    Each object ends on a newline, so no line is glued to the next object's first.
    """
    fs, _ = object_store.filesystem(url)
    target = local / "window.jsonl"
    with open(target, "wb") as out:
        for k in range(0, len(objects), FETCH_BATCH):
            batch = objects[k : k + FETCH_BATCH]
            fetched = fs.cat(batch, on_error="raise")
            for name in batch:
                data = fetched[fs._strip_protocol(name)]
                out.write(data if data.endswith(b"\n") else data + b"\n")
    return str(target)


def load_window(
    con: Any,
    directory: Location,
    entity: str,
    start: datetime,
    end: datetime,
    table: str = "preds",
    axis: TimeAxis = "request",
) -> WindowRead:
    """Temp table ``table`` with the well-formed predictions of [start, end) on the time ``axis``:
    when the service answered (``ts``, only the files of those hours are read) or the time the
    features describe (``as_of``: any file may hold such a row, every file is read)."""
    if axis == "request":
        files = log_files(directory, start, end)
    else:
        files = all_log_files(directory)
    con.execute(f"create or replace temp table {table} ({COLUMNS})")
    if not files:
        return WindowRead(files=0, malformed=0)
    if is_url(directory):
        with tempfile.TemporaryDirectory(prefix="churn-log-") as local:
            _read_lines(con, [fetch_objects(str(directory), files, Path(local))])
    else:
        _read_lines(con, files)
    con.execute(f"""
        create or replace temp table parsed as
        select try_cast(j->>'$.ts' as timestamptz)::timestamp as ts,
               try_cast(coalesce(j->>'$.as_of', j->>'$.ts') as timestamptz)::timestamp as as_of,
               j->>{_json_key(entity)} as entity_id, try_cast(j->>'$.probability' as double) as probability,
               try_cast(j->>'$.prediction' as integer) as prediction, j->>'$.model_version' as model_version,
               try_cast(j->>'$.latency_ms' as double) as latency_ms, j->'$.features' as features,
               j->>'$.request_id' as request_id
        from (select line::json as j from lines where json_valid(line))
    """)
    well_formed = (
        "ts is not null and probability is not null and prediction is not null "
        "and entity_id is not null and features is not null"
    )
    con.execute(
        f"insert into {table} select * from parsed where {well_formed} and {AXIS_COLUMN[axis]} >= $start "
        f"and {AXIS_COLUMN[axis]} < $end",
        {"start": start, "end": end},
    )
    bad = con.execute(
        "select (select count(*) from lines where not json_valid(line)) "
        f"+ (select count(*) from parsed where not ({well_formed}))"
    ).fetchall()[0][0]
    return WindowRead(files=len(files), malformed=int(bad))


def window_metrics(con: Any, table: str = "preds") -> WindowMetrics:
    count, positive_rate, p_mean, p_std, lat_mean, lat_p99 = con.execute(
        "select count(*), avg(prediction), avg(probability), stddev_samp(probability), avg(latency_ms), "
        f"quantile_cont(latency_ms, 0.99) from {table}"
    ).fetchall()[0]
    versions = dict(
        con.execute(f"select model_version, count(*) from {table} group by 1 order by 1").fetchall()
    )
    # a request's latency covers all its rows: judge it per row, so big batches are not "slow"
    requests, per_row_p99 = con.execute(
        "select count(*), quantile_cont(latency / n, 0.99) from (select max(latency_ms) as latency, count(*) as n "
        f"from {table} where request_id is not null group by request_id)"
    ).fetchall()[0]
    return WindowMetrics(
        count=int(count),
        positive_rate=positive_rate or 0.0,
        probability_mean=p_mean,
        probability_std=p_std,
        latency_mean_ms=lat_mean,
        latency_p99_ms=lat_p99 or 0.0,
        versions=versions,
        requests=int(requests),
        latency_p99_per_row_ms=per_row_p99,
    )


def as_model_sees(text: str, kind: FeatureKind) -> str:
    """SQL reading a logged feature value (as text) the way the model saw it: numbers as doubles,
    booleans as 0/1 (the model is fitted on them so), categories as text."""
    if kind == "num":
        return f"try_cast({text} as double)"
    if kind == "bool":
        return f"try_cast(try_cast({text} as boolean) as double)"
    return text


def sample(con: Any, reference: Reference, rows: int, table: str = "preds") -> pd.DataFrame:
    """A fixed-seed sample of the window: the champion's features plus probability."""
    columns = ", ".join(
        f'{as_model_sees(f"features->>{_json_key(n)}", kind)} as "{n}"'
        for n, kind in reference.features.items()
    )
    return con.execute(
        f"select {columns}, probability from {table} using sample reservoir({int(rows)} rows) "
        "repeatable (7)"
    ).df()
