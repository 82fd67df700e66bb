"""Durable prediction log: ``churn.predictions`` records as JSON lines under ``CHURN_PREDICTIONS_DIR``
(default ``$CHURN_HOME/predictions``), one file per process start and hour; or, when that is an
object-store URL (``s3://bucket/predictions``: a fleet of replicas), small immutable objects
(``ObjectStoreLog``). ``open_log`` picks the one the settings name.

Each answered prediction is written and flushed before the response leaves, so the number of
logged predictions equals the number answered and a restart loses nothing already answered. A
process never appends to a file it did not create: a crash may have torn the last line of an old
one, and the next record would be glued onto the fragment and lost with it.
DuckDB reads the files with ``read_json('predictions/*.jsonl')``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from churn.predictions import HOUR_FORMAT, file_name
from churn.settings import ServiceSettings, is_url

log = logging.getLogger("churn.service.log")


class Log(Protocol):
    def write(self, records: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


def open_log(settings: ServiceSettings) -> Log:
    """The prediction log the settings name: files in a directory, or objects on a store."""
    where = settings.predictions_dir
    if is_url(where):
        return ObjectStoreLog(str(where), settings.log_flush_records, settings.log_flush_seconds)
    return PredictionLog(Path(where))


class PredictionLog:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            writable = os.access(self.directory, os.W_OK | os.X_OK)
        except PermissionError:
            writable = False
        if not writable:
            # one clear line instead of a traceback per worker (e.g. a root-owned folder bind-mounted
            # into the image, whose user is not root)
            raise PermissionError(
                f"the prediction log folder {self.directory} is not writable by uid {os.getuid()}: "
                "mount a volume this user can write (docker: -v churn-data:/data) or set "
                "CHURN_PREDICTIONS_DIR"
            )
        self._lock = threading.Lock()
        self._hour: str | None = None
        self._handle: IO[bytes] | None = None
        self._start = uuid.uuid4().hex[:8]

    def _file(self) -> IO[bytes]:
        hour = time.strftime(HOUR_FORMAT, time.gmtime())
        if hour != self._hour:
            if self._handle:
                self._handle.close()
            # held open for the hour: one open per file, not per request
            self._handle = open(self.directory / file_name(hour, os.getpid(), self._start), "ab")  # noqa: SIM115
            self._hour = hour
        return self._handle

    def write(self, records: list[dict[str, Any]]) -> None:
        lines = b"".join([orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records])
        with self._lock:
            handle = self._file()
            handle.write(lines)
            handle.flush()

    def close(self) -> None:
        with self._lock:
            if self._handle:
                self._handle.close()
                self._handle = None


class ObjectStoreLog:
    """The prediction log of a fleet: every worker of every replica writes its own immutable objects
    ``<prefix>/<UTC hour>-<pid>-<process start>-<sequence>.jsonl`` through fsspec (s3fs for ``s3://``).

    Objects cannot be appended to, so records are buffered and written as a new object when
    ``flush_records`` are buffered (by the request that fills the buffer, in a background thread)
    or the oldest has waited ``flush_seconds`` (the same thread, on its timer), when the hour
    changes, and at shutdown. What a crash (SIGKILL, OOM) may lose is bounded: the records of the
    last ``flush_seconds`` and at most ``flush_records`` per worker (plus any object whose write was
    still failing). With ``flush_seconds == 0`` every request's records are written before its
    answer leaves (one PUT per request: nothing answered is lost; a failed PUT fails the request).

    A batch gets its sequence number when it is cut from the buffer and keeps it through retries,
    so an object whose PUT succeeded but whose answer was lost is overwritten with the same bytes,
    never written twice: a reader counts every record once.
    """

    def __init__(self, url: str, flush_records: int = 1000, flush_seconds: float = 2.0):
        import fsspec

        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self.root = self.root.rstrip("/")
        bucket = self.root.lstrip("/").split("/", 1)[0]
        try:
            reachable = self.fs.exists(bucket)
        except Exception as exc:  # the store is down or refuses us: one clear line at start
            raise PermissionError(
                f"the prediction log store {self.url} cannot be reached: {exc}"
            ) from exc
        if not reachable:
            raise PermissionError(
                f"the prediction log store {self.url}: bucket {bucket!r} does not exist or is not "
                "visible with these credentials (AWS_* variables): create it or set CHURN_PREDICTIONS_DIR"
            )
        self.flush_records = flush_records
        self.flush_seconds = flush_seconds
        self._start = uuid.uuid4().hex[:8]
        self._pid = os.getpid()
        self._lock = threading.Lock()  # the buffer and the queue of cut batches
        self._writing = threading.Lock()  # one writer at a time: objects land in sequence order
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._hour: str | None = None
        self._oldest = 0.0
        self._sequence = 0
        self._pending: list[tuple[str, bytes]] = []
        self._wake = threading.Event()
        self._closed = False
        self._failing = False
        self.objects_written = 0
        if flush_seconds > 0:
            threading.Thread(target=self._flush_loop, name="prediction-log", daemon=True).start()
        atexit.register(self.close)

    def write(self, records: list[dict[str, Any]]) -> None:
        lines = b"".join([orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records])
        hour = time.strftime(HOUR_FORMAT, time.gmtime())
        with self._lock:
            if self._buffer and hour != self._hour:
                self._cut()  # one hour per object: a reader picks objects by the hour in their name
            first = not self._buffer
            if first:
                self._oldest = time.monotonic()
            self._hour = hour
            self._buffer.append(lines)
            self._buffered += len(records)
            full = self._buffered >= self.flush_records
            if full or self.flush_seconds == 0:
                self._cut()
                mine = self._pending[-1]
        if self.flush_seconds == 0:
            try:
                self._drain()  # durable before the answer
            except Exception:
                with self._lock:  # the request fails: its records were not answered, never log them
                    if mine in self._pending:
                        self._pending.remove(mine)
                raise
        elif full or first:  # a full buffer now; a first record: the timer counts from it
            self._wake.set()

    def _cut(self) -> None:
        """Move the buffer into the queue as one named object (the lock is held)."""
        assert self._hour is not None
        name = file_name(self._hour, self._pid, self._start, self._sequence)
        self._pending.append((f"{self.root}/{name}", b"".join(self._buffer)))
        self._sequence += 1
        self._buffer, self._buffered = [], 0

    def _drain(self) -> None:
        """Write every queued object in order; an error leaves the rest queued and is raised."""
        with self._writing:
            while True:
                with self._lock:
                    if not self._pending:
                        return
                    path, data = self._pending[0]
                self.fs.pipe_file(path, data)
                self.objects_written += 1
                with self._lock:
                    self._pending.pop(0)

    def _flush_loop(self) -> None:
        backoff = self.flush_seconds
        while not self._closed:
            with self._lock:
                due = self._oldest + self.flush_seconds - time.monotonic()
                if self._buffer and due <= 0:
                    self._cut()
                wait = due if self._buffer and due > 0 else self.flush_seconds
            try:
                self._drain()
            except Exception:
                if not self._failing:  # once per outage, not once per retry
                    log.exception("writing the prediction log to %s failed; retrying", self.url)
                self._failing = True
                wait = backoff = min(backoff * 2, 60)
            else:
                if self._failing:
                    log.info("the prediction log writes to %s again", self.url)
                self._failing, backoff = False, self.flush_seconds
            self._wake.wait(wait)
            self._wake.clear()

    def flush(self) -> None:
        """Write whatever is buffered now (tests, shutdown)."""
        with self._lock:
            if self._buffer:
                self._cut()
        self._drain()

    def close(self) -> None:
        """Flush at shutdown, retrying a few times: what was answered should reach the store."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        for attempt in range(5):
            try:
                self.flush()
                return
            except Exception:
                if attempt == 4:
                    log.exception(
                        "the prediction log could not write its last records to %s", self.url
                    )
                    return
                time.sleep(0.5 * 2**attempt)
