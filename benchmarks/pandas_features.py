"""The naive baseline: the built-in feature views written the straightforward pandas way
(merge the spine with each event table on the customer, filter the window, group by).

It computes exactly what feature_sql/ computes, so the benchmark can check both give the same
training set before it compares their speed and memory.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

KEY = ["customer_id", "as_of"]
DAY = pd.Timedelta(days=1)


def _days_between(earlier: pd.Series, as_of: pd.Series) -> pd.Series:
    # DuckDB's date_diff('day', a, b) counts calendar-day boundaries; as_of is a midnight
    return (as_of - earlier.dt.normalize()).dt.days


def _window(spine: pd.DataFrame, events: pd.DataFrame, ts: str, days: int) -> pd.DataFrame:
    merged = spine[KEY].merge(events, on="customer_id")
    keep = (merged[ts] < merged["as_of"]) & (merged[ts] >= merged["as_of"] - days * DAY)
    keep &= merged["ingested_at"] < merged["as_of"]
    return merged[keep]


def build_training_set(
    raw: Path, as_of_dates: list[datetime], horizon_days: int = 30
) -> pd.DataFrame:
    raw = Path(raw)
    customers = pd.read_parquet(raw / "customers.parquet")
    cancelled = (
        pd.read_parquet(raw / "cancellations.parquet").groupby("customer_id")["cancelled_at"].min()
    )

    # spine: population and label
    dates = pd.DataFrame({"as_of": pd.to_datetime(as_of_dates).astype("datetime64[us]")})
    spine = dates.merge(customers, how="cross")
    spine["cancelled_at"] = spine["customer_id"].map(cancelled)
    spine = spine[
        (spine["signup_at"] < spine["as_of"])
        & (spine["cancelled_at"].isna() | (spine["cancelled_at"] >= spine["as_of"]))
    ]
    in_horizon = (spine["cancelled_at"] >= spine["as_of"]) & (
        spine["cancelled_at"] < spine["as_of"] + horizon_days * DAY
    )
    spine = spine.assign(label=in_horizon.fillna(False).astype("int32")).reset_index(drop=True)

    out = spine[["customer_id", "as_of", "label"]].copy()

    # customer_engagement_30d
    events = pd.read_parquet(raw / "events.parquet")
    w = _window(spine, events, "ts", 30)
    del events
    recent = w["ts"] >= w["as_of"] - 7 * DAY
    login = w["event_type"] == "login"
    w = w.assign(
        l7=(login & recent).astype(int),
        l30=login.astype(int),
        pv=(w["event_type"] == "page_view").astype(int),
        fu=(w["event_type"] == "feature_use").astype(int),
        day=w["ts"].dt.normalize(),
        login_ts=w["ts"].where(login),
    )
    g = (
        w.groupby(KEY)
        .agg(
            l7=("l7", "sum"),
            l30=("l30", "sum"),
            pv=("pv", "sum"),
            fu=("fu", "sum"),
            days=("day", "nunique"),
            last=("login_ts", "max"),
        )
        .reset_index()
    )
    del w
    e = out[KEY].merge(g, on=KEY, how="left")
    out["login_frequency_7d"] = e["l7"].fillna(0).astype("int64")
    out["logins_30d"] = e["l30"].fillna(0).astype("int64")
    out["page_views_30d"] = e["pv"].fillna(0).astype("int64")
    out["feature_uses_30d"] = e["fu"].fillna(0).astype("int64")
    out["active_days_30d"] = e["days"].fillna(0).astype("int64")
    out["login_trend_7d_vs_30d"] = e["l7"] / (e["l30"] * 7.0 / 30.0).replace(0, np.nan)
    out["days_since_last_login"] = _days_between(e["last"], e["as_of"]).fillna(30).astype("int64")

    # customer_profile
    p = out[KEY].merge(customers, on="customer_id", how="left")
    out["tenure_days"] = _days_between(p["signup_at"], p["as_of"]).astype("int64")
    for col in ("plan", "region", "channel"):
        out[col] = p[col]
    out["monthly_fee_usd"] = p["monthly_fee"].astype(float)
    out["age_years"] = p["age"].astype(float)

    # customer_support_90d
    tickets = pd.read_parquet(raw / "tickets.parquet")
    w = _window(spine, tickets, "created_at", 90)
    w = w.assign(
        hi=w["priority"].isin(["high", "urgent"]).astype(int),
        t30=(w["created_at"] >= w["as_of"] - 30 * DAY).astype(int),
    )
    g = (
        w.groupby(KEY)
        .agg(n=("hi", "size"), hi=("hi", "sum"), t30=("t30", "sum"), last=("created_at", "max"))
        .reset_index()
    )
    t = out[KEY].merge(g, on=KEY, how="left")
    out["support_tickets_90d"] = t["n"].fillna(0).astype("int64")
    out["high_priority_tickets_90d"] = t["hi"].fillna(0).astype("int64")
    out["support_tickets_30d"] = t["t30"].fillna(0).astype("int64")
    out["days_since_last_ticket"] = _days_between(t["last"], t["as_of"]).fillna(90).astype("int64")

    # customer_transactions_90d
    txn = pd.read_parquet(raw / "transactions.parquet")
    w = _window(spine, txn, "ts", 90)
    del txn
    in30 = w["ts"] >= w["as_of"] - 30 * DAY
    w = w.assign(a30=w["amount"].where(in30), o30=in30.astype(int))
    g = (
        w.groupby(KEY)
        .agg(
            s30=("a30", "sum"),
            any30=("a30", "count"),
            o30=("o30", "sum"),
            s90=("amount", "sum"),
            o90=("amount", "size"),
            last=("ts", "max"),
        )
        .reset_index()
    )
    del w
    t = out[KEY].merge(g, on=KEY, how="left")
    s30 = t["s30"].where(t["any30"] > 0)  # SQL sum over no rows is NULL
    out["total_purchases_30d"] = s30.fillna(0.0)
    out["orders_30d"] = t["o30"].fillna(0).astype("int64")
    out["total_purchases_90d"] = t["s90"].fillna(0.0)
    out["orders_90d"] = t["o90"].fillna(0).astype("int64")
    out["spend_trend_30d_vs_90d"] = s30 / (t["s90"] / 3.0).replace(0, np.nan)
    out["days_since_last_purchase"] = (
        _days_between(t["last"], t["as_of"]).fillna(90).astype("int64")
    )
    return out
