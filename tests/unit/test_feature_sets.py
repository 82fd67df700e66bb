"""Published feature sets: a manifest this version cannot read asks for a rebuild, by name."""

from __future__ import annotations

import json

import pytest

from adapters import feature_sets


def test_a_manifest_of_another_version_asks_for_a_rebuild(tmp_path):
    run = tmp_path / "runs" / "v1"
    run.mkdir(parents=True)
    (run / feature_sets.MANIFEST).write_text(
        json.dumps({"version": "v1", "training_set": {"as_of_first": "x"}})
    )
    (tmp_path / feature_sets.LATEST).write_text(json.dumps({"version": "v1"}))
    with pytest.raises(feature_sets.NoFeatureSetError, match="rebuild the features"):
        feature_sets.latest(tmp_path)
