"""What the monitor keeps: a DuckDB store of windows, feature drift, alerts and retrain decisions
(``$CHURN_HOME/monitoring/monitoring.duckdb``), and ``alerts.jsonl`` beside it.

A window's rows are written in one transaction, so the store never holds half a window.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from churn.contracts import Reference, WindowMeasurement
from churn.monitoring import AlertEvent, Verdict
from churn.settings import Settings

SCHEMA = """
create table if not exists windows (
    window_start timestamp, window_end timestamp, model_version varchar, count bigint, malformed_lines bigint,
    positive_rate double, probability_mean double, probability_std double, latency_mean_ms double,
    latency_p99_ms double, labelled bigint, accuracy double, precision double, recall double, auc_roc double,
    prediction_psi double, drifted_share double, dataset_drift boolean, breach boolean, report varchar,
    created_at timestamp);
create table if not exists feature_drift (
    window_end timestamp, feature varchar, psi double, drifted boolean, rows_with_feature bigint);
create table if not exists alerts (
    window_end timestamp, rule varchar, event varchar, value double, limit_value double, delivered_via varchar,
    created_at timestamp);
create table if not exists retrain_decisions (
    window_end timestamp, fired boolean, reason varchar, flow_run varchar, created_at timestamp);
"""


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def open_store(settings: Settings) -> Any:
    import duckdb

    settings.monitoring_db.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(settings.monitoring_db))
    con.execute(SCHEMA)
    return con


def open_alerts(con: Any) -> set[str]:
    rows = con.execute(
        "select rule, arg_max(event, created_at) from alerts group by rule"
    ).fetchall()
    return {rule for rule, event in rows if event == "fired"}


def recent_breaches(con: Any, before: datetime, count: int) -> list[bool]:
    """Breach flags of the ``count`` windows ending before ``before``, oldest first."""
    rows = con.execute(
        "select breach from windows where window_end < $end order by window_end desc limit $n",
        {"end": before, "n": count},
    ).fetchall()
    return [bool(r[0]) for r in rows][::-1]


def last_retrain(con: Any) -> datetime | None:
    value: datetime | None = con.execute(
        "select max(created_at) from retrain_decisions where fired"
    ).fetchall()[0][0]
    return value


def record_window(
    settings: Settings,
    reference: Reference,
    window: WindowMeasurement,
    verdict: Verdict,
    report: Path | None,
    delivered_via: str,
    start: datetime,
    end: datetime,
) -> None:
    """One transaction: the window row, its per-feature drift rows, alert changes and the retrain decision."""
    m, labels = window.metrics, window.labels
    rules = {c.rule: c for c in verdict.conditions}
    share = rules.get("drifted_share")
    now = _now()
    con = open_store(settings)
    try:
        con.execute("begin")
        con.execute(
            "delete from windows where window_start = $s and window_end = $e",
            {"s": start, "e": end},
        )
        con.execute("delete from feature_drift where window_end = $e", {"e": end})
        con.execute(
            "insert into windows values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, "
            "$16, $17, $18, $19, $20, $21)",
            [
                start,
                end,
                reference.model_version,
                m.count,
                window.read.malformed,
                m.positive_rate,
                m.probability_mean,
                m.probability_std,
                m.latency_mean_ms,
                m.latency_p99_ms,
                labels.labelled,
                labels.get("accuracy"),
                labels.get("precision"),
                labels.get("recall"),
                labels.get("auc_roc"),
                window.drift.prediction_psi,
                share.value if share else None,
                share.breached if share else None,
                verdict.breach,
                str(report) if report else None,
                now,
            ],
        )
        for name, value in window.drift.psi.items():
            condition = rules.get(f"psi:{name}")
            con.execute(
                "insert into feature_drift values ($1, $2, $3, $4, $5)",
                [
                    end,
                    name,
                    value,
                    condition.breached if condition else None,
                    window.drift.carried[name],
                ],
            )
        for e in verdict.events:
            con.execute(
                "insert into alerts values ($1, $2, $3, $4, $5, $6, $7)",
                [end, e.rule, e.event, e.value, e.limit, delivered_via, now],
            )
        con.execute(
            "insert into retrain_decisions values ($1, $2, $3, $4, $5)",
            [end, verdict.decision.fire, verdict.decision.reason, None, now],
        )
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        con.close()


def note_retrain_run(settings: Settings, end: datetime, outcome: str) -> None:
    """Record what retraining started on this window's (already stored) decision."""
    con = open_store(settings)
    try:
        con.execute(
            "update retrain_decisions set flow_run = $run where window_end = $end and fired",
            {"run": outcome, "end": end},
        )
    finally:
        con.close()


def append_alerts(
    settings: Settings, events: list[AlertEvent], start: datetime, end: datetime, delivered_via: str
) -> None:
    settings.alerts_log.parent.mkdir(parents=True, exist_ok=True)
    with settings.alerts_log.open("a") as handle:
        for e in events:
            handle.write(
                json.dumps(
                    {
                        **asdict(e),
                        "window_start": str(start),
                        "window_end": str(end),
                        "delivered_via": delivered_via,
                    }
                )
                + "\n"
            )
