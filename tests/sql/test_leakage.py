"""Plant a signal that is only visible in the future and show the training set never contains it."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from adapters import feature_engine as engine
from churn.featurestore import as_of_schedule
from tests.helpers import build, settings_for, write_tables


def _load(raw_dir):
    return {p.stem: pd.read_parquet(p) for p in raw_dir.glob("*.parquet")}


def test_future_and_late_rows_never_reach_the_training_set(tmp_path, small_world):
    settings = settings_for(tmp_path / "clean", small_world)
    repo = engine.load_feature_repo(settings.feature_repo)
    with engine.connect(settings) as con:
        engine.register_sources(con, repo, engine.resolve_sources(repo, settings.raw_dir))
        bounds = engine.data_bounds(con, repo)
    dates = as_of_schedule(repo.config.spine, bounds.covered_from, bounds.covered_to)
    clean = build(settings, dates)
    churners = clean[clean["label"] == 1]
    assert len(churners) > 10

    # For every future churner: huge purchases, logins and urgent tickets from as_of on (future),
    # and the same just before as_of but arriving after it (late): a perfect, leaky churn signal.
    tables = _load(small_world)
    at = churners["as_of"].to_numpy()
    ids = churners["customer_id"].to_numpy()
    hour = pd.Timedelta(hours=1)

    def planted(when, arrived):
        n = len(ids)
        return (
            pd.DataFrame(
                {
                    "transaction_id": range(10**9, 10**9 + n),
                    "customer_id": ids,
                    "ts": when,
                    "ingested_at": arrived,
                    "amount": 99_999.0,
                }
            ),
            pd.DataFrame(
                {"customer_id": ids, "event_type": "login", "ts": when, "ingested_at": arrived}
            ),
            pd.DataFrame(
                {
                    "ticket_id": range(10**9, 10**9 + n),
                    "customer_id": ids,
                    "created_at": when,
                    "ingested_at": arrived,
                    "priority": "urgent",
                    "category": "billing",
                }
            ),
        )

    future = planted(at, at + hour)  # happens exactly at as_of
    late = planted(at - hour, at)  # happened before as_of, arrived exactly at as_of
    for name, position in (("transactions", 0), ("events", 1), ("tickets", 2)):
        frame = pd.concat([tables[name], future[position], late[position]], ignore_index=True)
        for col in frame.columns:
            if str(tables[name][col].dtype).startswith("datetime"):
                frame[col] = frame[col].astype("datetime64[us]")
        tables[name] = frame
    leaky_raw = write_tables(tmp_path / "leaky", tables)
    leaky = build(settings_for(tmp_path / "leaky-home", leaky_raw), dates)

    pd.testing.assert_frame_equal(clean, leaky)

    # The plant is a real signal: one microsecond after as_of it shows in every churner's features.
    later = build(
        settings_for(tmp_path / "later", leaky_raw), [d + timedelta(hours=2) for d in dates]
    )
    shifted = later.merge(
        churners[["customer_id", "as_of"]].assign(
            as_of=lambda f: f["as_of"] + pd.Timedelta(hours=2)
        )
    )
    assert (shifted["total_purchases_30d"] >= 2 * 99_999.0).all()
