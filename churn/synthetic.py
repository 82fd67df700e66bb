"""A seeded synthetic churn world: customers, transactions, user events, support tickets, cancellations.

Churn is drawn first from a hazard that depends on plan, price, tenure, channel, a latent engagement
level and the season; behaviour then follows it: most churners wind down (fewer logins, less spend,
more and angrier tickets) in the weeks before they cancel, some leave without warning, and some loyal
customers have dips that look like a wind-down but are not. That keeps churn learnable, not trivial.

The generator yields the world in chunks of customers so any scale fits in memory; writing is the
caller's job. Rows of the event-like tables carry an ``ingested_at`` arrival time after their event
time (a small share arrive days late). With ``drift_months`` the world runs on past the history end
with a price rise that shifts spend, tickets and churn: usage drops, tickets and add-on spend rise,
and churn climbs most in the regions a competitor entered (a driver the history never showed, so a
model trained before it ranks worse); ``split_period`` separates the two periods.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

DAY = np.timedelta64(1, "D")
PLANS = np.array(["basic", "standard", "premium"])
PLAN_P = np.array([0.5, 0.35, 0.15])
PLAN_FEE = np.array([9.99, 19.99, 34.99])
REGIONS = np.array(["north", "south", "east", "west", "central"])
REGION_LOGIT = np.array([0.0, 0.15, -0.1, 0.05, 0.1])
REGION_DRIFT_LOGIT = np.array(
    [1.6, -0.3, 1.2, -0.3, -0.3]
)  # extra churn in the drift period: a competitor in two regions
CHANNELS = np.array(["organic", "paid_search", "referral", "partner"])
CHANNEL_P = np.array([0.4, 0.3, 0.2, 0.1])
CHANNEL_LOGIT = np.array([0.0, 0.35, -0.4, 0.1])
EVENT_TYPES = np.array(["login", "page_view", "feature_use"])
EVENT_RATE = np.array([0.22, 0.12, 0.05])  # per active day, before engagement and season
PRIORITIES = np.array(["low", "medium", "high", "urgent"])
TABLES = ("customers", "transactions", "events", "tickets", "cancellations")


@dataclass(frozen=True)
class WorldParams:
    customers: int = 20_000
    months: int = 18
    start: str = "2025-01-01"
    drift_months: int = 0
    late_fraction: float = 0.03
    activity: float = 1.0
    """Multiplier on every event rate: raises the event count without adding customers."""
    seed: int = 7
    chunk_customers: int = 20_000

    def __post_init__(self) -> None:
        problems = []
        if self.customers < 1:
            problems.append(f"customers must be >= 1, got {self.customers}")
        if self.months < 1:
            problems.append(f"months must be >= 1, got {self.months}")
        if self.drift_months < 0:
            problems.append(f"drift_months must be >= 0, got {self.drift_months}")
        if not 0 <= self.late_fraction <= 1:
            problems.append(f"late_fraction must be in [0, 1], got {self.late_fraction}")
        if self.activity <= 0:
            problems.append(f"activity must be > 0, got {self.activity}")
        if self.chunk_customers < 1:
            problems.append(f"chunk_customers must be >= 1, got {self.chunk_customers}")
        if problems:
            raise ValueError("invalid world parameters: " + "; ".join(problems))

    @property
    def start_ts(self) -> np.datetime64:
        return np.datetime64(self.start, "D")

    @property
    def history_end(self) -> np.datetime64:
        """First instant after the history period (the drift period, if any, starts here)."""
        return _add_months(self.start_ts, self.months)

    @property
    def world_end(self) -> np.datetime64:
        return _add_months(self.start_ts, self.months + self.drift_months)


def _add_months(day: np.datetime64, months: int) -> np.datetime64:
    return np.datetime64(pd.Timestamp(day) + pd.DateOffset(months=months), "D")


def generate_world(params: WorldParams) -> Iterator[dict[str, pd.DataFrame]]:
    """Yield the world chunk by chunk: each chunk maps table name to a DataFrame of its rows."""
    root = np.random.SeedSequence(params.seed)
    n_chunks = -(-params.customers // params.chunk_customers)
    for index, seed in enumerate(root.spawn(n_chunks)):
        first = index * params.chunk_customers
        count = min(params.chunk_customers, params.customers - first)
        yield _chunk(params, np.random.default_rng(seed), first, count)


def split_period(
    tables: dict[str, pd.DataFrame], boundary: np.datetime64
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Split a chunk into (history, later) by when each row became known: arrival, signup or cancellation."""
    known_at = {
        "customers": "signup_at",
        "transactions": "ingested_at",
        "events": "ingested_at",
        "tickets": "ingested_at",
        "cancellations": "cancelled_at",
    }
    cut = pd.Timestamp(boundary)
    history, later = {}, {}
    for name, frame in tables.items():
        early = frame[known_at[name]] < cut
        history[name] = frame[early].reset_index(drop=True)
        later[name] = frame[~early].reset_index(drop=True)
    return history, later


def _chunk(
    params: WorldParams, rng: np.random.Generator, first_id: int, n: int
) -> dict[str, pd.DataFrame]:
    start, world_end = params.start_ts, params.world_end
    n_days = int((world_end - start) / DAY)
    days = start + np.arange(n_days) * DAY
    drift_from = int((params.history_end - start) / DAY) if params.drift_months else n_days

    # --- who the customers are
    ids = np.arange(first_id, first_id + n, dtype=np.int64) + 100_000
    existing = rng.random(n) < 0.5
    signup_day = np.where(
        existing,
        -rng.integers(1, 3 * 365, n),  # signed up up to three years before the world starts
        rng.integers(0, n_days, n),
    )
    signup_at = start + signup_day * DAY + rng.integers(0, 86_400, n) * np.timedelta64(1, "s")
    plan = rng.choice(3, n, p=PLAN_P)
    price_ratio = rng.uniform(0.8, 1.25, n)
    fee = np.round(PLAN_FEE[plan] * price_ratio, 2)
    region = rng.integers(0, len(REGIONS), n)
    channel = rng.choice(len(CHANNELS), n, p=CHANNEL_P)
    age = rng.integers(18, 76, n).astype(float)
    age[rng.random(n) < 0.08] = np.nan
    engagement = rng.normal(0, 1, n)

    # --- when they churn: a daily hazard from a monthly logit
    d = np.arange(n_days)
    tenure_months = np.maximum(d[None, :] - signup_day[:, None], 0) / 30.0
    month_of_year = pd.DatetimeIndex(days).month.to_numpy()
    season = np.where(np.isin(month_of_year, [1, 2]), 0.35, 0.0) + np.where(
        month_of_year == 8, 0.15, 0.0
    )
    # non-linear on purpose: price hurts only the cheaper plans, churn is U-shaped in age and
    # spikes around the first contract anniversary, so trees beat a linear model
    age_effect = np.nan_to_num(0.8 * ((age - 45.0) / 15.0) ** 2 - 0.4, nan=0.0)
    anniversary = np.where((tenure_months >= 11) & (tenure_months < 13), 1.0, 0.0)
    logit = (
        -3.5
        + np.array([0.45, 0.0, -0.35])[plan][:, None]
        + np.array([6.0, 3.0, 0.0])[plan][:, None] * np.maximum(price_ratio[:, None] - 1.0, 0.0)
        + age_effect[:, None]
        + anniversary
        + REGION_LOGIT[region][:, None]
        + CHANNEL_LOGIT[channel][:, None]
        - 0.45 * engagement[:, None]
        + 0.9 * np.exp(-tenure_months / 3.0)
        + season[None, :]
        + np.where(d >= drift_from, 0.6, 0.0)[None, :]
        + np.where(d >= drift_from, 1.0, 0.0)[None, :] * REGION_DRIFT_LOGIT[region][:, None]
        + rng.normal(0, 0.3, (n, 1))
    )
    p_day = 1.0 / (1.0 + np.exp(-logit)) / 30.0
    active_from = np.maximum(signup_day, 0)
    at_risk = d[None, :] >= active_from[:, None]
    churn_hit = (rng.random((n, n_days)) < p_day) & at_risk
    del logit, p_day, tenure_months, anniversary
    churned = churn_hit.any(axis=1)
    churn_day = np.where(churned, churn_hit.argmax(axis=1), n_days)
    del churn_hit

    # --- behaviour: a wind-down before most cancellations, false alarms in loyal customers
    wind_down = churned & (rng.random(n) < 0.8)
    wind_len = rng.integers(30, 100, n)
    dip = ~churned & (rng.random(n) < 0.15)
    dip_len = rng.integers(14, 60, n)
    dip_end = rng.integers(0, n_days + 1, n)
    active = at_risk & (d[None, :] < churn_day[:, None])

    def ramp(end_day: np.ndarray, length: np.ndarray, mask: np.ndarray) -> np.ndarray:
        # 0 far from end_day, rising to 1 at end_day, over `length` days
        progress = 1.0 - (end_day[:, None] - d[None, :]) / length[:, None]
        inside = (d[None, :] < end_day[:, None]) & (progress > 0) & mask[:, None]
        return np.where(inside, np.clip(progress, 0, 1), 0.0)

    decline = np.maximum(ramp(churn_day, wind_len, wind_down), 0.8 * ramp(dip_end, dip_len, dip))
    weekly = np.array([1.05, 1.1, 1.1, 1.05, 1.0, 0.85, 0.85])[
        pd.DatetimeIndex(days).dayofweek.to_numpy()
    ]
    seasonal = 1.0 + 0.15 * np.cos(2 * np.pi * (month_of_year - 1) / 12.0)
    base = params.activity * np.exp(0.45 * engagement)[:, None] * (weekly * seasonal)[None, :]
    drift = d >= drift_from

    rate_login = base * (1.0 - 0.85 * decline) * np.where(drift, 0.55, 1.0)
    rate_txn = 0.07 * params.activity * np.exp(0.3 * engagement)[:, None] * (1.0 - 0.6 * decline)
    rate_ticket = (
        0.006
        * params.activity
        * (1.0 + 0.4 * (plan == 0))[:, None]
        * (1.0 + 3.0 * decline)
        * np.where(drift, 2.5, 1.0)
    )

    def draw(rate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        counts = rng.poisson(np.where(active, rate, 0.0))
        cust, day = np.nonzero(counts)
        reps = counts[cust, day]
        return np.repeat(cust, reps), np.repeat(day, reps)

    def stamp(day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ts = start + day * DAY + rng.integers(0, 86_400_000_000, len(day)) * np.timedelta64(1, "us")
        delay = rng.exponential(600_000_000, len(day)).astype(np.int64)  # ~10 minutes
        late = rng.random(len(day)) < params.late_fraction
        delay[late] += rng.integers(86_400_000_000, 10 * 86_400_000_000, late.sum())
        return ts, ts + delay * np.timedelta64(1, "us")

    # user events: one draw per type, so each type keeps its own rate
    parts = []
    for kind, kind_rate in enumerate(EVENT_RATE):
        c, day = draw(kind_rate * rate_login)
        parts.append((c, day, np.full(len(c), kind)))
    ev_c = np.concatenate([p[0] for p in parts])
    ev_d = np.concatenate([p[1] for p in parts])
    ev_k = np.concatenate([p[2] for p in parts])
    ev_ts, ev_in = stamp(ev_d)
    events = pd.DataFrame(
        {
            "customer_id": ids[ev_c],
            "event_type": EVENT_TYPES[ev_k],
            "ts": ev_ts,
            "ingested_at": ev_in,
        }
    ).sort_values(["customer_id", "ts"], kind="stable", ignore_index=True)

    tx_c, tx_d = draw(rate_txn)
    tx_ts, tx_in = stamp(tx_d)
    amount = (
        PLAN_FEE[plan[tx_c]]
        * 1.4
        * rng.lognormal(0.0, 0.5, len(tx_c))
        * (1.0 - 0.4 * decline[tx_c, tx_d])
        * np.where(drift[tx_d] & (plan[tx_c] < 2), 1.25, 1.0)
    )
    transactions = pd.DataFrame(
        {
            "transaction_id": np.arange(len(tx_c), dtype=np.int64) + first_id * 1_000,
            "customer_id": ids[tx_c],
            "ts": tx_ts,
            "ingested_at": tx_in,
            "amount": np.round(amount, 2),
        }
    ).sort_values(["customer_id", "ts"], kind="stable", ignore_index=True)

    tk_c, tk_d = draw(rate_ticket)
    tk_ts, tk_in = stamp(tk_d)
    angry = decline[tk_c, tk_d]
    pr_p = np.stack(
        [0.45 - 0.3 * angry, 0.35 - 0.05 * angry, 0.15 + 0.2 * angry, 0.05 + 0.15 * angry], axis=1
    )
    priority = (rng.random(len(tk_c))[:, None] > np.cumsum(pr_p, axis=1)).sum(axis=1).clip(0, 3)
    tickets = pd.DataFrame(
        {
            "ticket_id": np.arange(len(tk_c), dtype=np.int64) + first_id * 100,
            "customer_id": ids[tk_c],
            "created_at": tk_ts,
            "ingested_at": tk_in,
            "priority": PRIORITIES[priority],
            "category": rng.choice(
                np.array(["billing", "technical", "account", "other"]), len(tk_c)
            ),
        }
    ).sort_values(["customer_id", "created_at"], kind="stable", ignore_index=True)

    gone = np.nonzero(churned)[0]
    cancellations = pd.DataFrame(
        {
            "customer_id": ids[gone],
            "cancelled_at": start
            + churn_day[gone] * DAY
            + rng.integers(0, 86_400, len(gone)) * np.timedelta64(1, "s"),
            "reason": rng.choice(
                np.array(["price", "not_using", "competitor", "support", "other"]), len(gone)
            ),
        }
    )
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_at": signup_at.astype("datetime64[us]"),
            "plan": PLANS[plan],
            "region": REGIONS[region],
            "channel": CHANNELS[channel],
            "monthly_fee": fee,
            "age": age,
        }
    )
    for frame, cols in (
        (events, ["ts", "ingested_at"]),
        (transactions, ["ts", "ingested_at"]),
        (tickets, ["created_at", "ingested_at"]),
        (cancellations, ["cancelled_at"]),
    ):
        for col in cols:
            frame[col] = frame[col].astype("datetime64[us]")
    return {
        "customers": customers,
        "transactions": transactions,
        "events": events,
        "tickets": tickets,
        "cancellations": cancellations,
    }
