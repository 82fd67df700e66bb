from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn.online import OnlineFeatures

SNAPSHOT = pd.DataFrame(
    {
        "customer_id": [7, 8, 9],
        "as_of": pd.Timestamp("2025-01-01"),
        "logins": [3, 0, 5],
        "plan": ["basic", None, "premium"],
        "spend": [1.5, np.nan, 2.0],
    }
)


def test_lookup_returns_plain_values_and_unknown_ids_in_order():
    online = OnlineFeatures(SNAPSHOT, "customer_id", ["logins", "plan", "spend"])
    found, unknown = online.lookup([9, 42, 8, 41])
    assert found == {
        9: {"logins": 5, "plan": "premium", "spend": 2.0},
        8: {"logins": 0, "plan": None, "spend": None},
    }
    assert unknown == [42, 41]
    assert type(found[9]["logins"]) is int
    assert len(online) == 3 and 7 in online and online.get(1) is None


def test_bad_snapshots_are_rejected():
    with pytest.raises(ValueError, match="lacks columns \\['missing'\\]"):
        OnlineFeatures(SNAPSHOT, "customer_id", ["missing"])
    with pytest.raises(ValueError, match="duplicate customer_id"):
        OnlineFeatures(pd.concat([SNAPSHOT, SNAPSHOT]), "customer_id", ["logins"])
