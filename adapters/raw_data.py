"""Write the synthetic churn world as parquet tables (streamed chunk by chunk, so any scale fits)."""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from adapters import object_store
from churn.settings import Location, is_url
from churn.synthetic import TABLES, WorldParams, generate_world, split_period

DRIFT_DIR = "drift"


def world_exists(raw_dir: Location) -> bool:
    """Whether a generated world (its ``world.json``) is at ``raw_dir`` (a directory or a URL)."""
    return object_store.exists(object_store.join(raw_dir, "world.json"))


def write_world(params: WorldParams, out_dir: Location) -> dict[str, dict[str, int]]:
    """Generate the world into ``out_dir/<table>.parquet`` (and ``out_dir/drift/`` for a drift period).

    Files are written next to the target and renamed into place at the end, so an interrupted run
    leaves the previous data intact. Returns row counts per period and table. For an object-store
    URL the world is generated in a local temporary directory, the previous world's objects are
    removed and the new ones uploaded (``world.json`` last).
    """
    if is_url(out_dir):
        with tempfile.TemporaryDirectory(prefix="churn-world-") as tmp:
            counts = write_world(params, Path(tmp) / "raw")
            url = str(out_dir).rstrip("/")
            object_store.remove_dir(url)
            world = Path(tmp) / "raw" / "world.json"
            data = world.read_bytes()
            world.unlink()
            object_store.upload_dir(Path(tmp) / "raw", url)
            object_store.write_bytes(f"{url}/world.json", data)
        return counts
    out_dir = Path(out_dir)
    staging = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    periods = {"history": staging} | (
        {DRIFT_DIR: staging / DRIFT_DIR} if params.drift_months else {}
    )
    for folder in periods.values():
        folder.mkdir(parents=True)
    writers: dict[tuple[str, str], pq.ParquetWriter] = {}
    counts = {period: dict.fromkeys(TABLES, 0) for period in periods}
    try:
        for chunk in generate_world(params):
            parts = (
                dict(zip(periods, split_period(chunk, params.history_end)))
                if params.drift_months
                else {"history": chunk}
            )
            for period, tables in parts.items():
                for name, frame in tables.items():
                    table = pa.Table.from_pandas(frame, preserve_index=False)
                    key = (period, name)
                    if key not in writers:
                        writers[key] = pq.ParquetWriter(
                            periods[period] / f"{name}.parquet", table.schema
                        )
                    writers[key].write_table(table, row_group_size=1_000_000)
                    counts[period][name] += len(frame)
    finally:
        for writer in writers.values():
            writer.close()
    (staging / "world.json").write_text(
        json.dumps(
            {"params": asdict(params), "history_end": str(params.history_end), "rows": counts},
            indent=2,
        )
    )
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    return counts
