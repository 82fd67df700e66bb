"""The monitor flow on a real champion (trained on the small world, with its reference sample), a
real MLflow store, Prefect server, Evidently and DuckDB, over prediction logs written as the service
writes them: empty windows, malformed lines, an older model's log, matured and unmatured labels,
and alerts that fire once and clear once through a real webhook block (a local HTTP receiver)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from churn.params import MonitorParams, RetrainPolicy
from tests.helpers import prefect_events, run_tags, train_champion

HOUR = datetime(2026, 1, 10, 12)


@pytest.fixture(scope="module")
def champion(prefect_server, small_world, tmp_path_factory):
    home = tmp_path_factory.mktemp("monitor-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHURN_HOME", str(home))
        mp.setenv("CHURN_RAW_DIR", str(small_world))
        from churn.settings import Settings

        trained = train_champion()
        features = pd.read_parquet(next((home / "features").rglob("training_set.parquet")))
        yield {
            "home": home,
            "settings": Settings.from_env(),
            "trained": trained,
            "features": features,
        }


def write_log(home, name: str, records: list[dict], extra_lines: list[str] = ()) -> None:
    directory = home / "predictions"  # the default CHURN_PREDICTIONS_DIR, where the service writes
    directory.mkdir(exist_ok=True)
    with open(directory / name, "a") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
        for line in extra_lines:
            handle.write(line + "\n")


def records(
    champion,
    start: datetime,
    n: int,
    shift: float = 0.0,
    version: str = "1",
    as_of=None,
    drop=(),
    seed=0,
) -> list[dict]:
    rows = champion["features"].sample(n=n, random_state=seed, replace=True)
    names = [c for c in rows.columns if c not in ("customer_id", "as_of", "label")]
    out = []
    for k, (_, row) in enumerate(rows.iterrows()):
        features = {
            c: (None if pd.isna(row[c]) else (row[c].item() if hasattr(row[c], "item") else row[c]))
            for c in names
            if c not in drop
        }
        if shift:
            features = {
                c: (v * shift + 10 if isinstance(v, (int, float)) and v is not None else v)
                for c, v in features.items()
            }
        ts = start + timedelta(seconds=k)
        out.append(
            {
                "request_id": f"r{seed}-{k}",
                "row": 0,
                "ts": ts.isoformat() + "+00:00",
                "as_of": (as_of or row["as_of"]).isoformat()
                if as_of is not False
                else ts.isoformat() + "+00:00",
                "customer_id": int(row["customer_id"]),
                "prediction": int(k % 7 == 0),
                "probability": 0.1 + (k % 7) / 10,
                "model_version": version,
                "latency_ms": 2.0,
                "features": features,
            }
        )
    return out


def run(start: datetime, minutes: int = 60, return_state: bool = False, **overrides):
    from flows.monitor import monitor

    params = MonitorParams(
        window_start=start,
        window_end=start + timedelta(minutes=minutes),
        report_sample_rows=500,
        alerts={"min_rows": 20, "min_labelled": 20},
        retrain=RetrainPolicy(enabled=False),
        **overrides,
    )
    return monitor(params, return_state=return_state)


def store(champion):
    return duckdb.connect(str(champion["settings"].monitoring_db), read_only=True)


def test_an_empty_window_is_recorded_and_judges_nothing(champion):
    result = run(HOUR - timedelta(days=30))
    assert result.count == 0 and result.events == [] and result.report is None
    with store(champion) as con:
        assert con.execute(
            "select count from windows where window_end = $e",
            {"e": HOUR - timedelta(days=30) + timedelta(minutes=60)},
        ).fetchall() == [(0,)]


def test_malformed_and_truncated_lines_are_skipped_and_counted(champion):
    start = HOUR
    good = records(champion, start, 60)
    truncated = json.dumps(good[0])[:40]
    no_probability = json.dumps({k: v for k, v in good[1].items() if k != "probability"})
    write_log(
        champion["home"],
        f"{start:%Y%m%dT%H}-1.jsonl",
        good,
        ["not json at all", truncated, no_probability],
    )
    result = run(start)
    assert result.count == 60 and result.malformed == 3
    assert result.report and "<html" in Path(result.report).read_text()[:2000].lower()
    features = set(champion["features"].columns) - {"customer_id", "as_of", "label"}
    assert set(result.psi) == features and all(v >= 0 for v in result.psi.values())


def test_an_older_models_log_is_judged_on_the_features_it_shares(champion):
    start = HOUR + timedelta(hours=2)
    old = records(champion, start, 40, version="0", drop=("plan", "tenure_days"), seed=3)
    for r in old:
        r["features"]["legacy_score"] = 1.0
    write_log(
        champion["home"],
        f"{start:%Y%m%dT%H}-2.jsonl",
        old + records(champion, start + timedelta(minutes=5), 40, seed=4),
    )
    result = run(start)
    assert result.count == 80 and "legacy_score" not in result.psi and "plan" in result.psi
    with store(champion) as con:
        carried = dict(
            con.execute(
                "select feature, rows_with_feature from feature_drift where window_end = $e",
                {"e": start + timedelta(minutes=60)},
            ).fetchall()
        )
    assert carried["plan"] == 40 and carried["tenure_days"] == 40 and carried["orders_30d"] == 80


def test_labels_join_only_once_matured(champion):
    start = HOUR - timedelta(days=10)  # a day of its own: the one-day look-back sees only these
    matured = records(champion, start, 50, seed=5)  # as_of from the training set: outcomes observed
    fresh = records(
        champion, start + timedelta(minutes=1), 50, as_of=False, seed=6
    )  # as_of = now-ish: not yet
    write_log(champion["home"], f"{start:%Y%m%dT%H}-3.jsonl", matured + fresh)
    result = run(start, label_lookback_days=1)
    assert result.labels.labelled == 50 and 0 <= result.labels.get("accuracy") <= 1
    assert result.window_labels.labelled == 50  # this window's own: the same 50 here
    quality = result.report.replace("drift-", "quality-")
    assert "<html" in Path(quality).read_text()[:2000].lower()
    only_fresh = start + timedelta(hours=2)
    write_log(
        champion["home"],
        f"{only_fresh:%Y%m%dT%H}-3.jsonl",
        records(champion, only_fresh, 30, as_of=False, seed=7),
    )
    later = run(only_fresh, label_lookback_days=1)
    assert (
        later.count == 30 and later.labels.labelled == 50 and later.window_labels.labelled == 0
    )  # matured ones from the look-back, not the fresh


class Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self):
        Receiver.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_alerts_fire_once_and_clear_once_through_the_webhook_block(champion):
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        CustomWebhookNotificationBlock(
            name="churn",
            url=f"http://127.0.0.1:{server.server_port}/hook",
            json_data={"text": "{{body}}"},
            allow_private_urls=True,
        ).save("churn-alerts", overwrite=True)
        windows = [HOUR + timedelta(days=1, hours=h) for h in range(3)]
        for k, (start, shift) in enumerate(zip(windows, (3.0, 3.0, 0.0))):
            write_log(
                champion["home"],
                f"{start:%Y%m%dT%H}-9.jsonl",
                records(champion, start, 120, shift=shift, seed=10 + k),
            )
        Receiver.received.clear()
        since = datetime.now(UTC)
        state = run(windows[0], return_state=True, notify_block="custom-webhook/churn-alerts")
        first = state.result()
        fired = {e.rule for e in first.events}
        # the run says so where the user looks: its state, its tags, one event per alert
        assert (
            state.is_completed() and state.name == "Alerting" and "alert(s) open" in state.message
        )
        assert "alerting" in run_tags(state)
        announced = prefect_events("churn.alert.fired", since, expect=len(fired))
        assert {e["payload"]["rule"] for e in announced} == fired
        assert "-v1-drifted-" in Path(first.report).name  # the verdict in the report's name
        assert {e.event for e in first.events} == {"fired"} and len(fired) >= 5
        assert len(Receiver.received) == 1 and "FIRED" in Receiver.received[0]["text"]
        second = run(windows[1], notify_block="custom-webhook/churn-alerts")
        assert second.events == [] and len(Receiver.received) == 1  # still drifted: no storm
        state = run(windows[2], return_state=True, notify_block="custom-webhook/churn-alerts")
        third = state.result()
        assert {e.event for e in third.events} == {"cleared"} and len(Receiver.received) == 2
        cleared = {e.rule for e in third.events}
        assert not cleared & set(third.open_alerts) and fired - cleared <= set(third.open_alerts)
        assert state.name == ("Alerting" if third.open_alerts else "Completed")
        assert len(prefect_events("churn.alert.cleared", since, expect=len(third.events))) == len(
            third.events
        )
        assert "drifted_share" in {e.rule for e in third.events}
        assert "-v1-stable-" in Path(third.report).name
    finally:
        server.shutdown()
    lines = [json.loads(line) for line in champion["settings"].alerts_log.read_text().splitlines()]
    assert {line["delivered_via"] for line in lines[-len(fired) - len(third.events) :]} == {
        "block custom-webhook/churn-alerts"
    }
    with store(champion) as con:
        events = [
            e
            for (e,) in con.execute(
                "select event from alerts where rule = 'drifted_share' order by created_at"
            ).fetchall()
        ]
    assert events[-1] == "cleared" and all(
        a != b for a, b in zip(events, events[1:])
    )  # strictly alternating


def test_a_failing_webhook_falls_back_to_the_file(champion):
    start = HOUR + timedelta(days=2)
    write_log(
        champion["home"],
        f"{start:%Y%m%dT%H}-8.jsonl",
        records(champion, start, 120, shift=5.0, seed=20),
    )
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from ops.stack import free_port

    CustomWebhookNotificationBlock(
        name="dead",
        url=f"http://127.0.0.1:{free_port()}/hook",
        json_data={"text": "{{body}}"},
        allow_private_urls=True,
    ).save("dead-hook", overwrite=True)
    result = run(start, notify_block="custom-webhook/dead-hook")
    assert result.events
    last = json.loads(champion["settings"].alerts_log.read_text().splitlines()[-1])
    assert last["delivered_via"].startswith("file (block custom-webhook/dead-hook failed")


def test_a_retrain_trigger_that_cannot_start_is_recorded_and_starts_no_cooldown(champion):
    start = HOUR + timedelta(days=3)
    policy = RetrainPolicy(
        breaches=1, windows=1, min_new_labels=0, cooldown_hours=24, deployment="train/nowhere"
    )
    outcomes = []
    for k in range(2):
        window = start + timedelta(hours=k)
        write_log(
            champion["home"],
            f"{window:%Y%m%dT%H}-7.jsonl",
            records(champion, window, 120, shift=5.0, seed=30 + k),
        )
        from flows.monitor import monitor

        state = monitor(
            MonitorParams(
                window_start=window,
                window_end=window + timedelta(minutes=60),
                report_sample_rows=500,
                alerts={"min_rows": 20},
                retrain=policy,
            ),
            return_state=True,
        )
        assert state.name == "Retraining" and "retraining could not start" in state.message
        outcomes.append(state.result())
    assert all(
        r.retrain.fire and r.retrain_run.startswith("failed: ") for r in outcomes
    )  # the second not held
    with store(champion) as con:
        rows = con.execute(
            "select status, fired, flow_run from retrain_decisions where window_end in ($a, $b) "
            "order by window_end",
            {"a": start + timedelta(minutes=60), "b": start + timedelta(hours=1, minutes=60)},
        ).fetchall()
        stored = con.execute(
            "select count(*) from windows where window_start >= $s and window_start < $e",
            {"s": start, "e": start + timedelta(hours=2)},
        ).fetchall()[0][0]
    assert [(status, fired) for status, fired, _ in rows] == [("failed", False), ("failed", False)]
    assert rows[0][2] == (
        "failed: LookupError: deployment 'train/nowhere' is not registered with the Prefect "
        "server: run `make deploy`, or set retrain.in_process to train in the monitor's own process"
    )
    assert stored == 2


def test_an_as_of_window_judges_rows_by_the_time_their_features_describe(champion):
    requested = HOUR + timedelta(days=4)
    described = datetime(2025, 3, 1)  # a replay of an old period, sent today
    write_log(
        champion["home"],
        f"{requested:%Y%m%dT%H}-6.jsonl",
        records(champion, requested, 80, as_of=described, seed=40),
    )
    by_request = run(described, minutes=24 * 60)
    by_as_of = run(described, minutes=24 * 60, time_axis="as_of")
    assert by_request.count == 0 and by_as_of.count == 80
    with store(champion) as con:
        axes = con.execute(
            "select time_axis, count from windows where window_start = $s order by time_axis",
            {"s": described},
        ).fetchall()
    assert axes == [("as_of", 80), ("request", 0)]


def test_a_report_renderer_failure_never_loses_the_window(champion):
    start = HOUR + timedelta(days=5)
    rows = records(champion, start, 60, seed=50)
    for r in rows[:50]:  # logged by an older service that let anything through
        r["features"]["monthly_fee_usd"] = 1e308
    write_log(champion["home"], f"{start:%Y%m%dT%H}-5.jsonl", rows)
    result = run(start)
    assert result.count == 60 and "monthly_fee_usd" in result.psi  # the monitor's own figures
    with store(champion) as con:
        (report,) = con.execute(
            "select report from windows where window_start = $s", {"s": start}
        ).fetchall()[0]
    assert (
        report is not None
    )  # the HTML, or why Evidently could not render it: stored with the window
    assert report.endswith(".html") or report.startswith("failed: ")


def test_windows_ending_in_the_same_minute_keep_their_own_reports(champion):
    start = HOUR + timedelta(days=6)
    write_log(champion["home"], f"{start:%Y%m%dT%H}-4.jsonl", records(champion, start, 60, seed=60))
    hour = run(start)
    longer = run(
        start - timedelta(minutes=30), minutes=90
    )  # the same end, another start, the same rows
    assert (
        hour.report != longer.report
        and Path(hour.report).is_file()
        and Path(longer.report).is_file()
    )
    # bounds to the second, the champion's version, the verdict and the flow run
    named = re.compile(
        r"drift-\d{8}T\d{6}-\d{8}T\d{6}-v1-(stable|drifted|not-judged)-[0-9a-f]{8}\.html"
    )
    assert named.fullmatch(Path(hour.report).name) and named.fullmatch(Path(longer.report).name)
    again = run(start)  # a rerun of the same window keeps the first report
    assert again.report != hour.report and Path(hour.report).is_file()
    from adapters.mlflow_store import MONITORING_EXPERIMENT, connect

    client = connect(champion["settings"])
    experiment = client.get_experiment_by_name(MONITORING_EXPERIMENT).experiment_id
    names = [
        r.info.run_name
        for r in client.search_runs([experiment], filter_string="tags.champion_version = '1'")
    ]
    assert f"window-{start:%Y%m%dT%H%M%S}-{start + timedelta(minutes=60):%Y%m%dT%H%M%S}" in names
    assert "trend-champion-v1" in names


def test_a_reader_holding_the_store_open_delays_the_writer_but_never_breaks_it(champion):
    """DuckDB admits one writer or many readers: an inspection shell with monitoring.duckdb open
    read-only locks the monitor out; its store tasks retry with backoff until the reader is gone."""
    start = HOUR + timedelta(days=9)
    write_log(champion["home"], f"{start:%Y%m%dT%H}-6.jsonl", records(champion, start, 60, seed=60))
    from adapters.monitoring_store import open_store

    open_store(champion["settings"]).close()  # the store exists, as after any earlier window
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; con = duckdb.connect(sys.argv[1], read_only=True); "
            "print('open', flush=True); time.sleep(8)",
            str(champion["settings"].monitoring_db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout.readline().strip() == "open"
        state = run(start, return_state=True)
        assert state.is_completed(), state.message
    finally:
        reader.kill()
        reader.wait()
    with store(champion) as con:
        stored = con.execute(
            "select count(*) from windows where window_start = $s", {"s": start}
        ).fetchone()[0]
    assert stored == 1
    # the report link in the Prefect UI opens the copy logged to MLflow, not a file:// path
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    (link,) = [a for a in artifacts if a.key == "monitoring-report"]
    assert "](http://127.0.0.1:" in link.data and link.data.endswith("/artifacts)")
    assert "file://" not in link.data
