"""Durable prediction log: ``churn.predictions`` records as JSON lines under ``CHURN_PREDICTIONS_DIR``
(default ``$CHURN_HOME/predictions``), one file per process start and hour.

Each answered prediction is written and flushed before the response leaves, so the number of
logged predictions equals the number answered and a restart loses nothing already answered. A
process never appends to a file it did not create: a crash may have torn the last line of an old
one, and the next record would be glued onto the fragment and lost with it.
DuckDB reads the files with ``read_json('predictions/*.jsonl')``.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Any

import orjson

from churn.predictions import HOUR_FORMAT, file_name


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
