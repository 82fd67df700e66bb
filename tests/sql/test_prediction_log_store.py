"""The monitor's reader over an object store: the objects a fleet writes, read by DuckDB through the
fsspec filesystem registered with the connection (fsspec's in-memory store stands in for S3 here)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import duckdb
import fsspec
import pytest

from adapters import prediction_log
from churn.predictions import file_name


def line(k: int, ts: datetime) -> str:
    return json.dumps(
        {
            "ts": ts.isoformat() + "+00:00",
            "account": k,
            "probability": 0.1,
            "prediction": 0,
            "model_version": "1",
            "latency_ms": 1.0,
            "request_id": f"r{k}",
            "features": {"x": k},
        }
    )


@pytest.fixture
def bucket():
    fs = fsspec.filesystem("memory")
    fs.mkdir("/fleet-log")
    yield fs
    fs.rm("/fleet-log", recursive=True)


def test_a_window_over_the_store_reads_each_object_of_its_hours_once(bucket):
    start = datetime(2030, 1, 1, 10)
    # two replicas, objects per flush; one hour before the window, one in it, one long after
    writes = {
        file_name("20300101T09", 11, "aa", 0): [line(0, start - timedelta(minutes=1))],
        file_name("20300101T10", 11, "aa", 1): [
            line(1, start),
            line(2, start + timedelta(minutes=5)),
        ],
        file_name("20300101T10", 12, "bb", 0): [line(3, start + timedelta(minutes=59)), "{torn"],
        file_name("20300101T14", 12, "bb", 1): [line(4, start + timedelta(hours=4))],
    }
    for name, lines in writes.items():
        bucket.pipe_file(f"/fleet-log/predictions/{name}", ("\n".join(lines) + "\n").encode())
    url = "memory://fleet-log/predictions"
    files = prediction_log.log_files(url, start, start + timedelta(hours=1))
    assert [f.rsplit("/", 1)[1] for f in files] == sorted(list(writes)[:3])
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    read = prediction_log.load_window(con, url, "account", start, start + timedelta(hours=1))
    assert (read.files, read.malformed) == (3, 1)
    assert con.execute("select list(entity_id order by ts) from preds").fetchone()[0] == [
        "1",
        "2",
        "3",
    ]
    by_as_of = prediction_log.load_window(
        con, url, "account", start, start + timedelta(hours=5), axis="as_of"
    )
    assert by_as_of.files == 4  # every object: any may hold rows of an as-of window
    assert con.execute("select count(*) from preds").fetchone()[0] == 4


def test_a_store_without_its_bucket_says_so():
    with pytest.raises(FileNotFoundError, match="its bucket does not exist"):
        prediction_log.log_files(
            "memory://no-such-log/predictions", datetime(2030, 1, 1), datetime(2030, 1, 2)
        )
