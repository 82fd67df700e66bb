"""The online snapshot is the same SQL on another spine: for the same (customer, as_of) the values match."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from tests.helpers import build, settings_for


def test_online_values_equal_training_values(tmp_path, small_world):
    settings = settings_for(tmp_path, small_world)
    as_of = datetime(2025, 7, 1)
    training = build(settings, [as_of], with_label=True)
    online = build(settings, [as_of], with_label=False)
    assert len(online) > 100
    pd.testing.assert_frame_equal(training.drop(columns=["label"]), online)
