"""Hash partitions of the entity: the same rows, values, dtypes and order as the single-query build,
for integer and string ids, with partitions left empty when there are more partitions than entities
(float aggregates to the last bits: see ``assert_same_table``)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from adapters import feature_engine as engine
from adapters import feature_sets
from churn.contracts import Partition
from churn.featurestore import as_of_schedule
from tests.fixtures.real_shaped import APP_REPO, write_app
from tests.helpers import assert_same_table, settings_for


def build_table(settings, repo, dates: list[datetime], with_label: bool, table: Path, n: int):
    """What the flow's partition tasks do, one after the other: (rows, positives) summed."""
    counts = [
        engine.write_features(
            settings,
            repo,
            dates,
            with_label=with_label,
            out=feature_sets.part_file(table, part),
            partition=part,
        )
        for part in (Partition(i, n) for i in range(n))
    ]
    return sum(r for r, _ in counts), sum(p for _, p in counts)


def training_dates(settings, repo) -> list[datetime]:
    bounds = engine.check_sources(settings, repo).bounds
    return as_of_schedule(repo.config.spine, bounds.covered_from, bounds.covered_to)


@pytest.fixture(scope="module")
def app_world(tmp_path_factory) -> Path:
    """12 users with string ids: fewer than the 16 partitions of the largest case."""
    return write_app(tmp_path_factory.mktemp("app") / "raw", users=12, seed=3)


@pytest.mark.parametrize("case", ["synthetic", "app"])
def test_partitioned_tables_read_back_as_the_single_build(tmp_path, small_world, app_world, case):
    raw, repo_dir, counts = {
        "synthetic": (small_world, None, (4, 8)),
        "app": (app_world, APP_REPO, (4, 8, 16)),
    }[case]
    settings = settings_for(tmp_path, raw, repo_dir)
    repo = engine.load_feature_repo(settings.feature_repo)
    entity = repo.config.entity
    dates = training_dates(settings, repo)
    online_at = [dates[-1]]
    single = {
        "training": tmp_path / "single" / feature_sets.TRAINING_SET,
        "online": tmp_path / "single" / feature_sets.ONLINE_SNAPSHOT,
    }
    single["training"].parent.mkdir()
    single_counts = build_table(settings, repo, dates, True, single["training"], 1)
    build_table(settings, repo, online_at, False, single["online"], 1)
    expected = {name: pd.read_parquet(path) for name, path in single.items()}
    assert len(expected["training"]) > 50 and len(expected["online"]) > 0

    for n in counts:
        run = tmp_path / f"n{n}"
        run.mkdir()
        training, online = run / feature_sets.TRAINING_SET, run / feature_sets.ONLINE_SNAPSHOT
        assert build_table(settings, repo, dates, True, training, n) == single_counts
        build_table(settings, repo, online_at, False, online, n)
        parts = feature_sets.table_files(training)
        assert [p.name for p in parts] == [f"part-{i:05d}.parquet" for i in range(n)]
        if n > expected["training"][entity].nunique():  # some partitions are empty: written
            for table in (training, online):  # with the schema, and read back all the same
                assert 0 in [len(pd.read_parquet(p)) for p in feature_sets.table_files(table)]
        for name, table in (("training", training), ("online", online)):
            assert_same_table(feature_sets.read_table(table, entity), expected[name])
            columns = list(expected[name].columns[-3:])  # e.g. the drift gate's selection
            assert_same_table(
                feature_sets.read_table(table, entity, columns=columns), expected[name][columns]
            )
        packaged = run / "packaged.parquet"  # what the Bento gets: one file, in the same order
        feature_sets.copy_table(settings, online, packaged, entity)
        assert_same_table(pd.read_parquet(packaged), expected["online"])


def test_a_table_that_is_neither_a_file_nor_parts_asks_for_a_rebuild(tmp_path):
    (tmp_path / "empty.parquet").mkdir()
    for table in (tmp_path / "empty.parquet", tmp_path / "missing.parquet"):
        with pytest.raises(feature_sets.NoFeatureSetError, match="rebuild the features"):
            feature_sets.read_table(table, "customer_id")


def test_a_partition_index_outside_its_count_is_refused():
    with pytest.raises(ValueError, match="partition index 4 outside 0..3"):
        Partition(4, 4)
