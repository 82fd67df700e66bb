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
alter table windows add column if not exists time_axis varchar;
alter table windows add column if not exists window_labelled bigint;
alter table windows add column if not exists window_accuracy double;
alter table windows add column if not exists window_auc_roc double;
alter table feature_drift add column if not exists rule varchar;
alter table feature_drift add column if not exists p_value double;
alter table retrain_decisions add column if not exists status varchar;
"""
"""Columns added since the first release are added to an older store in place."""


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def is_locked(exc: BaseException | None) -> bool:
    """A DuckDB store another process holds open (DuckDB allows one writer, or readers only)."""
    return exc is not None and "lock" in str(exc).lower() and "duckdb" in type(exc).__module__


def retry_when_locked(task: Any, task_run: Any, state: Any) -> bool:
    """A task retry condition: retry only when the store was locked by another process."""
    try:
        state.result()
    except Exception as exc:
        return is_locked(exc)
    return False


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
    report: Path | str | None,
    delivered_via: str,
    start: datetime,
    end: datetime,
    time_axis: str,
) -> None:
    """One transaction: the window row, its per-feature drift rows, alert changes and the retrain decision."""
    m, labels = window.metrics, window.labels
    rules = {c.rule: c for c in verdict.conditions}
    share = rules.get("drifted_share")
    now = _now()
    con = open_store(settings)
    try:
        con.execute("begin")
        con.execute(  # a re-run of the same window replaces it (rows stored before the axis existed: request)
            "delete from windows where window_start = $s and window_end = $e "
            "and coalesce(time_axis, 'request') = $axis",
            {"s": start, "e": end, "axis": time_axis},
        )
        con.execute("delete from feature_drift where window_end = $e", {"e": end})
        row = {
            "window_start": start,
            "window_end": end,
            "time_axis": time_axis,
            "model_version": reference.model_version,
            "count": m.count,
            "malformed_lines": window.read.malformed,
            "positive_rate": m.positive_rate,
            "probability_mean": m.probability_mean,
            "probability_std": m.probability_std,
            "latency_mean_ms": m.latency_mean_ms,
            "latency_p99_ms": m.latency_p99_ms,
            "labelled": labels.labelled,
            "accuracy": labels.get("accuracy"),
            "precision": labels.get("precision"),
            "recall": labels.get("recall"),
            "auc_roc": labels.get("auc_roc"),
            "window_labelled": window.window_labels.labelled,
            "window_accuracy": window.window_labels.get("accuracy"),
            "window_auc_roc": window.window_labels.get("auc_roc"),
            "prediction_psi": window.drift.prediction_psi,
            "drifted_share": share.value if share else None,
            "dataset_drift": share.breached if share else None,
            "breach": verdict.breach,
            "report": str(report) if report else None,
            "created_at": now,
        }
        columns = ", ".join(f'"{c}"' for c in row)
        con.execute(
            f"insert into windows ({columns}) values ({', '.join('?' * len(row))})",
            list(row.values()),
        )
        for name, value in window.drift.psi.items():
            condition = rules.get(f"psi:{name}")
            con.execute(
                "insert into feature_drift (window_end, feature, psi, drifted, rows_with_feature, rule, p_value) "
                "values (?, ?, ?, ?, ?, ?, ?)",
                [
                    end,
                    name,
                    value,
                    condition.breached if condition else None,
                    window.drift.carried[name],
                    condition.why if condition else None,
                    window.drift.p_values.get(name),
                ],
            )
        for e in verdict.events:
            con.execute(
                "insert into alerts values ($1, $2, $3, $4, $5, $6, $7)",
                [end, e.rule, e.event, e.value, e.limit, delivered_via, now],
            )
        con.execute(
            "insert into retrain_decisions (window_end, fired, reason, flow_run, created_at, status) "
            "values (?, ?, ?, ?, ?, ?)",
            [
                end,
                verdict.decision.fire,
                verdict.decision.reason,
                None,
                now,
                "fired" if verdict.decision.fire else "held",
            ],
        )
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        con.close()


def note_retrain_run(settings: Settings, end: datetime, outcome: str, failed: bool = False) -> None:
    """Record what retraining started on this window's (already stored) decision. A trigger that
    failed is recorded as failed and not as fired, so it starts no cooldown: the next window retries."""
    con = open_store(settings)
    try:
        con.execute(
            "update retrain_decisions set flow_run = $run, status = $status, fired = not $failed "
            "where window_end = $end and status = 'fired'",
            {
                "run": outcome,
                "end": end,
                "failed": failed,
                "status": "failed" if failed else "fired",
            },
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
