"""The service's prediction log: a restarted process never appends to a line a crash tore; on an
object store, immutable objects per flush, nothing lost at close, nothing written twice."""

from __future__ import annotations

import json
import time

import pytest

from bentos.prediction_log import ObjectStoreLog, PredictionLog
from churn.predictions import FILE_NAME, record


def one(k: int) -> dict:
    return record(
        "id",
        k,
        request_id=f"r{k}",
        row=0,
        ts="2026-01-01T00:00:00+00:00",
        as_of="2026-01-01T00:00:00",
        prediction=0,
        probability=0.1,
        model_version="1",
        latency_ms=1.0,
        features={"x": 1.0},
    )


def test_a_restart_with_the_same_pid_writes_a_file_of_its_own(tmp_path):
    first = PredictionLog(tmp_path)
    first.write([one(1)])
    (torn,) = tmp_path.glob("*.jsonl")
    with torn.open("ab") as handle:  # the process dies mid-record
        handle.write(b'{"request_id": "r2", "ro')
    second = PredictionLog(tmp_path)  # containers reuse pids: same pid, same hour
    second.write([one(3)])
    second.close()
    files = sorted(tmp_path.glob("*.jsonl"))
    assert len(files) == 2 and all(FILE_NAME.match(f.name) for f in files)
    fresh = next(f for f in files if f != torn)
    assert [json.loads(line)["request_id"] for line in fresh.read_text().splitlines()] == ["r3"]


# The object-store log of a fleet (fsspec's in-memory filesystem stands in for S3 here; the real S3
# stand-in is in tests/integration/test_prod_profile.py).


@pytest.fixture
def store(request):
    import fsspec

    fs = fsspec.filesystem("memory")
    bucket = f"/log-{request.node.name.replace('_', '-')[:40]}"
    fs.mkdir(bucket)
    yield fs, f"memory:/{bucket}/predictions"
    fs.rm(bucket, recursive=True)


def objects(fs, url: str) -> dict[str, list[str]]:
    root = url.removeprefix("memory:/")
    return {
        path.rsplit("/", 1)[1]: [
            json.loads(x)["request_id"] for x in fs.cat_file(path).splitlines()
        ]
        for path in sorted(fs.find(root))
    }


def test_the_store_log_writes_a_new_object_per_flush_and_loses_nothing_at_close(store):
    fs, url = store
    log = ObjectStoreLog(url, flush_records=3, flush_seconds=3600)
    for k in range(7):
        log.write([one(k)])
    deadline = time.monotonic() + 10
    while log.objects_written < 2 and time.monotonic() < deadline:  # the writer thread's PUTs
        time.sleep(0.01)
    assert [ids for ids in objects(fs, url).values()] == [["r0", "r1", "r2"], ["r3", "r4", "r5"]]
    log.close()  # the 7th record was still buffered: shutdown writes it
    written = objects(fs, url)
    assert [ids for ids in written.values()][-1] == ["r6"]
    names = list(written)
    assert all(FILE_NAME.match(n) for n in names) and [n[-11:-6] for n in names] == [
        "00000",
        "00001",
        "00002",
    ]
    assert len({n.rsplit("-", 1)[0] for n in names}) == 1  # one hour, pid and process start


def test_the_store_log_flushes_records_that_waited_long_enough(store):
    fs, url = store
    log = ObjectStoreLog(url, flush_records=1000, flush_seconds=0.2)
    log.write([one(1), one(2)])
    deadline = time.monotonic() + 10
    while not objects(fs, url) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(objects(fs, url).values()) == [["r1", "r2"]]
    log.close()
    assert list(objects(fs, url).values()) == [["r1", "r2"]]  # nothing written twice


def test_durable_before_the_answer_and_a_failed_write_keeps_its_name(store, monkeypatch):
    fs, url = store
    log = ObjectStoreLog(url, flush_records=1000, flush_seconds=0)
    log.write([one(1)])
    assert list(objects(fs, url).values()) == [["r1"]]  # written before write() returned

    calls = []
    real = log.fs.pipe_file

    def flaky(path, data, **kw):
        calls.append(path)
        if len(calls) == 1:
            raise OSError("store unavailable")
        return real(path, data, **kw)

    monkeypatch.setattr(log.fs, "pipe_file", flaky)
    with pytest.raises(OSError, match="store unavailable"):
        log.write([one(2)])  # that request fails (500): its record is not logged
    log.write([one(3)])
    assert list(objects(fs, url).values()) == [["r1"], ["r3"]]

    buffered = ObjectStoreLog(url + "-buffered", flush_records=1000, flush_seconds=3600)
    calls.clear()
    monkeypatch.setattr(buffered.fs, "pipe_file", flaky)
    buffered.write([one(4)])
    with pytest.raises(OSError):
        buffered.flush()  # the PUT fails (or its answer is lost): the object stays queued
    buffered.close()  # retried under the same name: one object, the record once
    assert list(objects(fs, url + "-buffered").values()) == [["r4"]]
    assert len(set(calls)) == 1


def test_a_missing_bucket_is_one_clear_error():
    with pytest.raises(PermissionError, match="bucket 'no-such-bucket' does not exist"):
        ObjectStoreLog("memory://no-such-bucket/predictions")
