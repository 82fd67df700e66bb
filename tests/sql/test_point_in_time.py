"""Each default view on hand-built tables: rows just before, exactly at and after as_of, window
edges, and a late-arriving row. Only rows that happened AND arrived strictly before as_of count."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from tests.helpers import build, settings_for, write_tables

AS_OF = datetime(2025, 3, 1)
US = timedelta(microseconds=1)
DAY = timedelta(days=1)


def ts(*values):
    return pd.Series(values, dtype="datetime64[us]")


@pytest.fixture
def features(tmp_path):
    customers = pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4, 5],
            "signup_at": ts(
                AS_OF - 100 * DAY, AS_OF, AS_OF - 10 * DAY, AS_OF - 50 * DAY, AS_OF - 40 * DAY
            ),
            "plan": ["basic", "premium", "standard", "basic", "basic"],
            "region": ["north", "south", "east", "west", "central"],
            "channel": ["organic", "referral", "partner", "organic", "paid_search"],
            "monthly_fee": [9.99, 34.99, 19.99, 9.99, 9.99],
            "age": [30.0, None, 41.0, 25.0, 60.0],
        }
    )
    # customer 1: every edge case on amounts that identify which rows were counted
    txn_ts = [
        AS_OF - US,
        AS_OF,
        AS_OF + 3600 * timedelta(seconds=1),
        AS_OF - 2 * DAY,
        AS_OF - 30 * DAY,
        AS_OF - 30 * DAY - US,
        AS_OF - 90 * DAY - US,
    ]
    txn_in = [
        AS_OF - US,
        AS_OF,
        AS_OF + timedelta(hours=2),
        AS_OF + DAY,  # the 4th arrives late
        AS_OF - 30 * DAY,
        AS_OF - 30 * DAY,
        AS_OF - 90 * DAY,
    ]
    transactions = pd.DataFrame(
        {
            "transaction_id": range(7),
            "customer_id": [1] * 7,
            "ts": ts(*txn_ts),
            "ingested_at": ts(*txn_in),
            "amount": [10.0, 100.0, 1000.0, 10000.0, 5.0, 7.0, 50000.0],
        }
    )
    ev_ts = [
        AS_OF - US,
        AS_OF,
        AS_OF + DAY,
        AS_OF - DAY,
        AS_OF - 7 * DAY,
        AS_OF - 7 * DAY - US,
        AS_OF - 3 * DAY,
    ]
    ev_in = [
        AS_OF - US,
        AS_OF,
        AS_OF + DAY,
        AS_OF + 2 * DAY,
        AS_OF - 7 * DAY,
        AS_OF - 7 * DAY,
        AS_OF - 3 * DAY,
    ]
    events = pd.DataFrame(
        {
            "customer_id": [1] * 7,
            "event_type": ["login"] * 6 + ["page_view"],
            "ts": ts(*ev_ts),
            "ingested_at": ts(*ev_in),
        }
    )
    tk_ts = [AS_OF - US, AS_OF, AS_OF - 5 * DAY, AS_OF - 89 * DAY, AS_OF - 90 * DAY - US]
    tk_in = [AS_OF - US, AS_OF, AS_OF + DAY, AS_OF - 89 * DAY, AS_OF - 90 * DAY]
    tickets = pd.DataFrame(
        {
            "ticket_id": range(5),
            "customer_id": [1] * 5,
            "created_at": ts(*tk_ts),
            "ingested_at": ts(*tk_in),
            "priority": ["urgent", "high", "high", "low", "high"],
            "category": ["billing"] * 5,
        }
    )
    cancellations = pd.DataFrame(
        {
            "customer_id": [1, 3, 4, 5],
            "cancelled_at": ts(AS_OF + 30 * DAY - US, AS_OF + 30 * DAY, AS_OF - DAY, AS_OF),
            "reason": ["price"] * 4,
        }
    )
    raw = write_tables(
        tmp_path / "raw",
        {
            "customers": customers,
            "transactions": transactions,
            "events": events,
            "tickets": tickets,
            "cancellations": cancellations,
        },
    )
    frame = build(settings_for(tmp_path, raw), [AS_OF])
    return frame.set_index("customer_id")


def test_population_excludes_future_signups_and_past_cancellations(features):
    # 2 signs up exactly at as_of (not before it); 4 cancelled the day before
    assert sorted(features.index) == [1, 3, 5]


def test_label_window_is_as_of_inclusive_to_horizon_exclusive(features):
    assert features.loc[1, "label"] == 1  # cancels 1 microsecond before the 30-day horizon ends
    assert features.loc[3, "label"] == 0  # cancels exactly at the horizon
    assert features.loc[5, "label"] == 1  # cancels exactly at as_of: still active, and churns


def test_transactions_use_only_rows_before_as_of_that_had_arrived(features):
    row = features.loc[1]
    assert row["total_purchases_30d"] == 15.0  # 10 (just before) + 5 (exactly 30 days before)
    assert row["orders_30d"] == 2
    assert row["total_purchases_90d"] == 22.0  # plus 7 (just outside 30 days)
    assert row["orders_90d"] == 3
    assert row["days_since_last_purchase"] == 1
    assert row["spend_trend_30d_vs_90d"] == pytest.approx(15.0 / (22.0 / 3.0))


def test_events_use_only_rows_before_as_of_that_had_arrived(features):
    row = features.loc[1]
    assert row["login_frequency_7d"] == 2  # just before, and exactly 7 days before
    assert row["logins_30d"] == 3  # plus 7 days + 1 microsecond before; the late login is unseen
    assert row["page_views_30d"] == 1
    assert row["days_since_last_login"] == 1


def test_tickets_use_only_rows_before_as_of_that_had_arrived(features):
    row = features.loc[1]
    assert row["support_tickets_90d"] == 2  # just before, and 89 days before
    assert row["high_priority_tickets_90d"] == 1
    assert row["support_tickets_30d"] == 1


def test_customer_without_history_gets_zero_counts_and_profile(features):
    row = features.loc[3]
    assert (row["total_purchases_30d"], row["login_frequency_7d"], row["support_tickets_90d"]) == (
        0.0,
        0,
        0,
    )
    assert row["days_since_last_login"] == 30
    assert pd.isna(row["spend_trend_30d_vs_90d"])
    assert row["tenure_days"] == 10
    assert row["plan"] == "standard"
