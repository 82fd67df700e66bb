from __future__ import annotations

import pandas as pd
import pytest

from churn.synthetic import WorldParams, generate_world, split_period


def world(**kw):
    chunks = list(generate_world(WorldParams(**kw)))
    return {name: pd.concat([c[name] for c in chunks], ignore_index=True) for name in chunks[0]}


def test_same_seed_same_world_other_seed_other_world():
    a, b, c = (
        world(customers=300, months=4, seed=1),
        world(customers=300, months=4, seed=1),
        world(customers=300, months=4, seed=2),
    )
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name])
    assert not a["events"].equals(c["events"])


def test_chunking_does_not_change_sizes_much_and_ids_are_unique():
    w = world(customers=500, months=3, chunk_customers=128)
    assert w["customers"]["customer_id"].is_unique and len(w["customers"]) == 500
    assert set(w["events"]["customer_id"]) <= set(w["customers"]["customer_id"])


def test_rows_arrive_after_they_happen_and_some_arrive_days_late():
    w = world(customers=400, months=4, late_fraction=0.05)
    delay = w["transactions"]["ingested_at"] - w["transactions"]["ts"]
    assert (delay > pd.Timedelta(0)).all()
    late = (delay > pd.Timedelta(days=1)).mean()
    assert 0.02 < late < 0.1


def test_activity_scales_events_and_cancellations_happen():
    base, busy = world(customers=300, months=4), world(customers=300, months=4, activity=3.0)
    assert 2.5 < len(busy["events"]) / len(base["events"]) < 3.5
    assert 0 < len(base["cancellations"]) < 300


def test_drift_period_raises_spend_and_tickets():
    params = WorldParams(customers=2000, months=6, drift_months=3, seed=3)
    history, later = {}, {}
    for chunk in generate_world(params):
        h, l = split_period(chunk, params.history_end)
        for name in h:
            history.setdefault(name, []).append(h[name])
            later.setdefault(name, []).append(l[name])
    history = {k: pd.concat(v) for k, v in history.items()}
    later = {k: pd.concat(v) for k, v in later.items()}
    cut = pd.Timestamp(params.history_end)
    assert (later["events"]["ingested_at"] >= cut).all() and (
        history["events"]["ingested_at"] < cut
    ).all()
    recent = history["transactions"][history["transactions"]["ts"] >= cut - pd.Timedelta(days=90)]
    assert later["transactions"]["amount"].mean() > 1.1 * recent["amount"].mean()

    def tickets_per_txn(tables):
        return len(tables["tickets"]) / len(tables["transactions"])

    assert tickets_per_txn(later) > 1.3 * tickets_per_txn(
        {
            "tickets": history["tickets"][
                history["tickets"]["created_at"] >= cut - pd.Timedelta(days=90)
            ],
            "transactions": recent,
        }
    )


def test_invalid_parameters_are_named():
    with pytest.raises(ValueError, match="customers must be >= 1, got 0; late_fraction must be in"):
        WorldParams(customers=0, late_fraction=2)
