"""Durable prediction log: JSON lines under ``$CHURN_HOME/predictions``, one file per process and hour.

Each answered prediction is written and flushed before the response leaves, so the number of
logged predictions equals the number answered and a restart loses nothing already answered.
DuckDB reads the files with ``read_json('predictions/*.jsonl')``.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import orjson


class PredictionLog:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._hour = None
        self._handle = None

    def _file(self):
        hour = time.strftime("%Y%m%dT%H", time.gmtime())
        if hour != self._hour:
            if self._handle:
                self._handle.close()
            self._handle = open(self.directory / f"{hour}-{os.getpid()}.jsonl", "ab")
            self._hour = hour
        return self._handle

    def write(self, records: list[dict]) -> None:
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
