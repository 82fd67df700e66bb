"""The built-in feature repo loads, follows the naming rules, and the registry command lists it."""

from __future__ import annotations

import json
import re

from adapters.feature_engine import load_feature_repo
from ops.cli import main
from tests.helpers import ROOT

SEED_FEATURES = {"total_purchases_30d", "login_frequency_7d", "support_tickets_90d"}


def test_every_view_loads_and_follows_naming():
    repo = load_feature_repo(ROOT / "feature_sql")
    names = {c.name for c in repo.feature_columns}
    assert names >= SEED_FEATURES and len(names) >= 15
    for view in repo.views:
        assert re.fullmatch(r"customer_[a-z0-9_]+", view.name)
        assert view.spec.entity == "customer_id"
        sql = view.sql.lower()
        assert "select * from final" in sql
        # every windowed event is filtered strictly before as_of, on event and arrival time
        if "ingested_at" in sql:
            assert "ingested_at < s.as_of" in sql


def test_features_list_command(capsys):
    assert main(["features", "list", "--json", "--repo", str(ROOT / "feature_sql")]) == 0
    rows = json.loads(capsys.readouterr().out)
    repo = load_feature_repo(ROOT / "feature_sql")
    assert {r["feature"] for r in rows} == {c.name for c in repo.feature_columns}
    hashes = {v.name: v.sql_hash for v in repo.views}
    assert all(r["sql_hash"] == hashes[r["view"]] and r["description"] and r["dtype"] for r in rows)
