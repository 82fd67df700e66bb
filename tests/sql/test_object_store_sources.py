"""Raw data and feature sets on an object store (fsspec's in-memory store stands in for S3 here; the
S3 stand-in itself is in tests/integration/test_prod_profile.py): the same SQL over `memory://` URLs,
a feature set published there and read back through the local cache."""

from __future__ import annotations

import json
from datetime import datetime

import fsspec
import pandas as pd
import pytest

from adapters import feature_engine, feature_sets, object_store
from churn.contracts import FeatureSetManifest
from tests.helpers import ROOT


@pytest.fixture
def bucket(request):
    fs = fsspec.filesystem("memory")
    name = f"/store-{request.node.name.replace('_', '-')[:40]}"
    fs.mkdir(name)
    yield f"memory:/{name}"
    fs.rm(name, recursive=True)


def test_sources_on_the_store_read_as_files_do(bucket, small_world, tmp_path):
    repo = feature_engine.load_feature_repo(ROOT / "feature_sql")
    raw = f"{bucket}/raw"
    object_store.upload_dir(small_world, raw)
    remote = feature_engine.resolve_sources(repo, raw)
    local = feature_engine.resolve_sources(repo, small_world)
    assert [s.name for s in remote] == [s.name for s in local]
    assert all(f.startswith("memory://") for s in remote for f in s.files)
    for here, there in zip(local, remote):
        assert [feature_engine.file_digest(f) for f in here.files] == [
            feature_engine.file_digest(f) for f in there.files
        ]
        pd.testing.assert_frame_equal(
            feature_engine.read_source(here.files), feature_engine.read_source(there.files)
        )
    import duckdb

    counts = []
    for sources in (local, remote):
        con = duckdb.connect()
        feature_engine.register_sources(con, repo, sources)
        counts.append(
            {s.name: con.execute(f'select count(*) from "{s.name}"').fetchone()[0] for s in sources}
        )
    assert counts[0] == counts[1] and all(counts[0].values())
    with pytest.raises(feature_engine.FeatureBuildError, match="no file matches memory://"):
        feature_engine.resolve_sources(repo, f"{bucket}/empty")


def test_a_feature_set_published_to_the_store_reads_back_through_the_cache(
    bucket, tmp_path, monkeypatch
):
    # the manifest's contents are the features flow's (tested there and end to end in the prod
    # profile's test): here a stub that round-trips as JSON
    monkeypatch.setattr(
        FeatureSetManifest,
        "model_validate_json",
        classmethod(lambda cls, text: cls.model_construct(**json.loads(text))),
    )
    monkeypatch.setattr(
        FeatureSetManifest,
        "model_dump_json",
        lambda self, **kw: json.dumps({"version": self.version}),
    )
    store = f"{bucket}/features"
    assert not feature_sets.exists(store)
    with pytest.raises(feature_sets.NoFeatureSetError):
        feature_sets.latest(store, tmp_path / "cache")
    version, staging = feature_sets.new_staging(store, tmp_path / "build")
    frame = pd.DataFrame(
        {"as_of": [datetime(2030, 1, 1)] * 3, "customer_id": [3, 1, 2], "x": [0.1, 0.2, 0.3]}
    )
    frame.to_parquet(staging / feature_sets.TRAINING_SET)
    manifest = FeatureSetManifest.model_construct(version=version)
    published = feature_sets.publish(store, staging, manifest)
    assert published.path == tmp_path / "build" / "runs" / version  # the builder keeps its copy
    assert json.loads(object_store.read_bytes(f"{store}/latest.json"))["version"] == version
    assert feature_sets.exists(store)
    read = feature_sets.latest(store, tmp_path / "reader")  # another machine: downloaded once
    assert read.path == tmp_path / "reader" / "runs" / version and read.version == version
    pd.testing.assert_frame_equal(pd.read_parquet(read.path / feature_sets.TRAINING_SET), frame)
    assert feature_sets.latest(store, tmp_path / "reader").path == read.path
