"""Monitoring tasks: read a window of the prediction log with DuckDB, measure it against the
champion's reference, join matured labels, render the Evidently report, store, alert, retrain.

Everything the monitor keeps lives under ``$CHURN_HOME/monitoring``: ``monitoring.duckdb`` (tables
``windows``, ``feature_drift``, ``alerts``, ``retrain_decisions``, written in one transaction per
run), ``reports/*.html``, ``alerts.jsonl`` and the champion's reference sample per version.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from churn import gates, monitoring
from churn.params import MonitorParams
from churn.settings import Settings
from tasks import feature_engine, mlflow_store, registry
from tasks.training import REFERENCE_FILE

LOG_NAME = re.compile(r"^(\d{8}T\d{2})-\d+\.jsonl$")
SCHEMA = """
create table if not exists windows (
    window_start timestamp, window_end timestamp, model_version varchar, count bigint, malformed_lines bigint,
    positive_rate double, probability_mean double, probability_std double, latency_mean_ms double,
    latency_p99_ms double, labelled bigint, accuracy double, precision double, recall double, auc double,
    prediction_psi double, drifted_share double, dataset_drift boolean, breach boolean, report varchar,
    created_at timestamp);
create table if not exists feature_drift (
    window_end timestamp, feature varchar, psi double, drifted boolean, rows_with_feature bigint);
create table if not exists alerts (
    window_end timestamp, rule varchar, event varchar, value double, threshold double, delivered_via varchar,
    created_at timestamp);
create table if not exists retrain_decisions (
    window_end timestamp, fired boolean, reason varchar, flow_run varchar, created_at timestamp);
"""


class MonitoringError(RuntimeError):
    """The monitor cannot judge this window; the message says what is missing and what to do."""


def monitoring_dir(settings: Settings) -> Path:
    return settings.home / "monitoring"


def prediction_log_dir(settings: Settings) -> Path:
    return settings.home / "predictions"


@dataclass
class Reference:
    model_version: str
    training_auc: float | None
    features: dict[str, str]
    """name -> "num" or "str", in model order."""
    frame: pd.DataFrame


@task(cache_policy=NO_CACHE)
def load_reference(settings: Settings, model_name: str) -> Reference:
    """The champion's reference sample (logged with its training run), cached per version."""
    import mlflow

    client = mlflow_store.connect(settings)
    version = registry.alias_version(client, model_name, registry.CHAMPION)
    if version is None:
        raise MonitoringError(f"{model_name} has no @champion: nothing to monitor against; run the train flow first")
    details = client.get_model_version(model_name, version)
    run = client.get_run(details.run_id)
    info = mlflow.models.get_model_info(f"models:/{model_name}/{version}")
    names = info.metadata["feature_names"]
    categorical = set(info.metadata.get("categorical_features") or [])
    cache = monitoring_dir(settings) / "reference" / f"v{version}.parquet"
    if not cache.is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        try:
            local = mlflow.artifacts.download_artifacts(run_id=details.run_id, artifact_path=f"monitoring/{REFERENCE_FILE}",
                                                        tracking_uri=settings.tracking_uri)
        except Exception as exc:  # MLflow raises several types for a missing artifact
            raise MonitoringError(f"champion v{version} (run {details.run_id}) has no monitoring/{REFERENCE_FILE}: "
                                  f"it predates reference samples; retrain to monitor it ({exc})") from exc
        tmp = cache.with_suffix(".tmp")
        shutil.copyfile(local, tmp)
        tmp.rename(cache)
    return Reference(str(version), run.data.metrics.get("auc_roc"), {n: "str" if n in categorical else "num" for n in names},
                     pd.read_parquet(cache))


def _log_files(directory: Path, start: datetime, end: datetime) -> list[str]:
    """Hourly files that can hold rows of [start, end); files named otherwise are read too."""
    first, last = (start - timedelta(hours=1)).strftime("%Y%m%dT%H"), end.strftime("%Y%m%dT%H")
    out = []
    for path in sorted(directory.glob("*.jsonl")):
        match = LOG_NAME.match(path.name)
        if match is None or first <= match.group(1) <= last:
            out.append(str(path))
    return out


def _connect(settings: Settings):
    con = feature_engine.connect(settings)
    con.execute("set TimeZone = 'UTC'")
    return con


def load_window(con, directory: Path, start: datetime, end: datetime, table: str = "preds") -> dict:
    """Temp table ``table`` with the well-formed predictions of [start, end); counts of files read and of malformed lines."""
    files = _log_files(directory, start, end)
    con.execute(f"create or replace temp table {table} (ts timestamp, as_of timestamp, customer_id varchar, probability double, "
                "prediction integer, model_version varchar, latency_ms double, features json)")
    if not files:
        return {"files": 0, "malformed": 0}
    con.execute(
        "create or replace temp table lines as select line from read_csv($files, columns = {'line': 'VARCHAR'}, "
        "header = false, delim = chr(1), quote = '', escape = '', auto_detect = false) where line <> ''",
        {"files": files},
    )
    con.execute("""
        create or replace temp table parsed as
        select try_cast(j->>'$.ts' as timestamptz)::timestamp as ts,
               try_cast(coalesce(j->>'$.as_of', j->>'$.ts') as timestamptz)::timestamp as as_of,
               j->>'$.customer_id' as customer_id, try_cast(j->>'$.probability' as double) as probability,
               try_cast(j->>'$.prediction' as integer) as prediction, j->>'$.model_version' as model_version,
               try_cast(j->>'$.latency_ms' as double) as latency_ms, j->'$.features' as features
        from (select line::json as j from lines where json_valid(line))
    """)
    con.execute(f"insert into {table} select * from parsed where ts >= $start and ts < $end and probability is not null "
                "and prediction is not null and customer_id is not null and features is not null",
                {"start": start, "end": end})
    bad = con.execute("select (select count(*) from lines where not json_valid(line)) + (select count(*) from parsed "
                      "where ts is null or probability is null or prediction is null or customer_id is null "
                      "or features is null)").fetchall()[0][0]
    return {"files": len(files), "malformed": bad}


def window_metrics(con) -> dict:
    count, positive_rate, p_mean, p_std, lat_mean, lat_p99 = con.execute(
        "select count(*), avg(prediction), avg(probability), stddev_samp(probability), avg(latency_ms), "
        "quantile_cont(latency_ms, 0.99) from preds").fetchall()[0]
    versions = dict(con.execute("select model_version, count(*) from preds group by 1 order by 1").fetchall())
    return {"count": count, "positive_rate": positive_rate or 0.0, "probability_mean": p_mean, "probability_std": p_std,
            "latency_mean_ms": lat_mean, "latency_p99_ms": lat_p99 or 0.0, "versions": versions}


def _numeric_counts_sql(expr: str, edges: np.ndarray, rows: str = "true") -> list[str]:
    """Aggregates giving numeric_bin_counts()'s bins over the ``rows`` condition:
    (-inf, e1], (e1, e2], ..., (ek, inf), then missing."""
    edges = [float(e) for e in edges]
    parts = [f"count(*) filter (where {rows} and {expr} <= {edges[0]!r})"] if len(edges) else []
    parts += [f"count(*) filter (where {rows} and {expr} > {lo!r} and {expr} <= {hi!r})" for lo, hi in zip(edges[:-1], edges[1:])]
    parts.append(f"count(*) filter (where {rows} and {expr} > {edges[-1]!r})" if len(edges) else f"count({expr}) filter (where {rows})")
    parts.append(f"count(*) filter (where {rows} and {expr} is null)")
    return parts


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def drift(con, reference: Reference, bins: int) -> tuple[dict[str, float], dict[str, int], float | None]:
    """PSI per feature over every row of the window (features a row does not carry are left out for
    that feature: an older model version's log), the rows carrying each feature, and prediction PSI.

    Each JSON line is parsed once for all features; the numeric bins of every feature and of the
    prediction come from one aggregate pass, the categorical levels from one group-by each."""
    names = list(reference.features)
    con.execute("create or replace temp table feature_values as select json_extract_string(features, $paths) as v, "
                "json_keys(features) as k, probability from preds", {"paths": [f'$."{n}"' for n in names]})
    has = {n: f"list_contains(k, {_literal(n)})" for n in names}
    value = {n: f"v[{i + 1}]" for i, n in enumerate(names)}
    aggregates, spans, edges_of = [f"count(*) filter (where {has[n]})" for n in names], {}, {}
    for name in [n for n in names if reference.features[n] == "num"] + ["probability"]:
        ref = reference.frame[name].to_numpy(dtype=float, na_value=np.nan)
        edges_of[name] = gates.quantile_edges(ref, bins)
        expr, rows = ("probability", "true") if name == "probability" else (f"try_cast({value[name]} as double)", has[name])
        parts = _numeric_counts_sql(expr, edges_of[name], rows)
        spans[name] = (len(aggregates), len(aggregates) + len(parts))
        aggregates += parts
    totals = con.execute(f"select {', '.join(aggregates)} from feature_values").fetchall()[0]
    carried = dict(zip(names, totals[:len(names)]))
    psi = {}
    for name in names:
        if carried[name] == 0:
            continue
        ref = reference.frame[name]
        if name in spans:
            current = np.array(totals[spans[name][0]:spans[name][1]], dtype=float)
            psi[name] = gates.psi_from_counts(gates.numeric_bin_counts(ref.to_numpy(dtype=float, na_value=np.nan), edges_of[name]), current)
        else:
            levels = sorted(ref.dropna().astype(str).unique())
            counts = dict(con.execute(f"select {value[name]}, count(*) from feature_values where {has[name]} group by 1").fetchall())
            current = np.array([*(counts.get(level, 0) for level in levels),
                                sum(n for k, n in counts.items() if k is not None and k not in levels), counts.get(None, 0)],
                               dtype=float)
            psi[name] = gates.psi_from_counts(gates.categorical_bin_counts(ref, levels), current)
    prediction_psi = None
    if sum(totals[spans["probability"][0]:spans["probability"][1]]):
        current = np.array(totals[spans["probability"][0]:spans["probability"][1]], dtype=float)
        prediction_psi = gates.psi_from_counts(
            gates.numeric_bin_counts(reference.frame["probability"].to_numpy(dtype=float), edges_of["probability"]), current)
    return psi, carried, prediction_psi


def matured_labels(settings: Settings, con, table: str) -> tuple[pd.DataFrame, str]:
    """Labels for the predictions in ``table`` whose outcome is known: label.sql over the raw data with
    the predictions' (customer, as_of) as the spine, kept only where as_of + horizon has been observed."""
    repo = feature_engine.load_feature_repo(settings.feature_repo)
    entity, horizon = repo.config.entity, repo.config.spine.horizon_days
    try:
        sources = feature_engine.resolve_sources(repo, settings.raw_dir)
    except feature_engine.FeatureBuildError as exc:
        return pd.DataFrame(), f"no labels: the raw data is not readable ({exc})"
    feature_engine.register_sources(con, repo, sources)
    observed_until = feature_engine.data_bounds(con, repo).covered_to
    cast = "bigint" if repo.config.entity_dtype == "int64" else "varchar"
    con.execute(f'create or replace temp table spine as select distinct try_cast(customer_id as {cast}) as "{entity}", '
                f"as_of from {table} where as_of + to_days($h) <= $until and try_cast(customer_id as {cast}) is not null",
                {"h": horizon, "until": observed_until})
    if con.execute("select count(*) from spine").fetchall()[0][0] == 0:
        return pd.DataFrame(), (f"no matured labels yet: outcomes are observed until {observed_until:%Y-%m-%d %H:%M}, "
                                f"and a prediction's label needs {horizon} days after its as_of")
    feature_engine.evaluate_labels(con, repo)
    frame = con.execute(
        f'select p.probability, p.prediction, l."{repo.config.label}" as label from {table} p '
        f'join labels l on l."{entity}" = try_cast(p.customer_id as {cast}) and l.as_of = p.as_of').df()
    return frame, f"{len(frame)} predictions with matured labels (outcomes observed until {observed_until:%Y-%m-%d})"


def label_metrics(labelled: pd.DataFrame) -> dict:
    if labelled.empty:
        return {"labelled": 0, "accuracy": None, "precision": None, "recall": None, "auc": None}
    from sklearn.metrics import accuracy_score, precision_score, recall_score, roc_auc_score

    y, pred, proba = labelled["label"].to_numpy(), labelled["prediction"].to_numpy(), labelled["probability"].to_numpy()
    both = len(np.unique(y)) == 2
    return {"labelled": len(labelled), "accuracy": float(accuracy_score(y, pred)),
            "precision": float(precision_score(y, pred, zero_division=0)), "recall": float(recall_score(y, pred, zero_division=0)),
            "auc": float(roc_auc_score(y, proba)) if both else None}


@task(cache_policy=NO_CACHE)
def measure_window(settings: Settings, params: MonitorParams, reference: Reference, start: datetime, end: datetime) -> dict:
    """Everything the monitor judges, computed in DuckDB over the whole window."""
    logger = get_run_logger()
    con = _connect(settings)
    try:
        read = load_window(con, prediction_log_dir(settings), start, end)
        if read["malformed"]:
            logger.warning("skipped %d malformed or incomplete prediction-log lines in %d files", read["malformed"], read["files"])
        metrics = window_metrics(con)
        if metrics["count"] == 0:
            logger.warning("no predictions logged in [%s, %s): nothing to judge in this window", start, end)
            return {"read": read, "metrics": metrics, "psi": {}, "carried": {}, "prediction_psi": None,
                    "labels": label_metrics(pd.DataFrame()), "labels_note": "no predictions", "sample": None,
                    "labelled_sample": None}
        others = {v: n for v, n in metrics["versions"].items() if v != reference.model_version}
        if others:
            logger.info("predictions by other model versions in this window: %s (judged on the features they share "
                        "with champion v%s)", others, reference.model_version)
        psi, carried, prediction_psi = drift(con, reference, params.psi_bins)
        lacking = {n: metrics["count"] - c for n, c in carried.items() if c < metrics["count"]}
        if lacking:
            logger.warning("rows without some of the champion's features (older model versions): %s", lacking)
        # outcomes mature a horizon after the prediction: judge quality on the look-back, not just this window
        load_window(con, prediction_log_dir(settings), end - timedelta(days=params.label_lookback_days), end, "lookback")
        labelled, note = matured_labels(settings, con, "lookback")
        note += f" among predictions of the last {params.label_lookback_days} days"
        logger.info(note)
        sample = _sample(con, reference, params.report_sample_rows)
        labelled_sample = labelled.sample(n=min(len(labelled), params.report_sample_rows), random_state=7) if len(labelled) else None
        return {"read": read, "metrics": metrics, "psi": psi, "carried": carried, "prediction_psi": prediction_psi,
                "labels": label_metrics(labelled), "labels_note": note, "sample": sample, "labelled_sample": labelled_sample}
    finally:
        con.close()


def _sample(con, reference: Reference, rows: int) -> pd.DataFrame:
    """A fixed-seed sample of the window as a frame of the champion's features plus probability."""
    columns = ", ".join(
        f"try_cast(features->>'$.\"{n}\"' as double) as \"{n}\"" if kind == "num" else f"features->>'$.\"{n}\"' as \"{n}\""
        for n, kind in reference.features.items())
    return con.execute(f"select {columns}, probability from preds using sample reservoir({int(rows)} rows) "
                       "repeatable (7)").df()


@task(cache_policy=NO_CACHE)
def render_report(settings: Settings, params: MonitorParams, reference: Reference, measured: dict, end: datetime) -> Path | None:
    """Evidently data drift (features and prediction) on bounded samples, and classification quality on
    matured labels beside the reference's held-out quality; saved as HTML (``quality-*.html`` next to it)."""
    if measured["sample"] is None or measured["sample"].empty:
        return None
    out = monitoring_dir(settings) / "reports" / f"drift-{end:%Y%m%dT%H%M}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    reference_rows = reference.frame.sample(n=min(params.report_sample_rows, len(reference.frame)), random_state=7)
    evidently_drift(reference, reference_rows, measured["sample"], params.alerts.max_psi).save_html(str(out))
    labelled = measured["labelled_sample"]
    if labelled is not None and labelled["label"].nunique() == 2:
        evidently_quality(reference, reference_rows, labelled).save_html(str(out.with_name(out.name.replace("drift-", "quality-"))))
    return out


def evidently_quality(reference: Reference, reference_rows: pd.DataFrame, labelled: pd.DataFrame):
    """Evidently's binary classification quality: matured labels now vs the reference's held-out rows."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    label = [c for c in reference_rows.columns if c not in reference.features and c != "probability"][0]
    ref = pd.DataFrame({"label": reference_rows[label].astype(int), "probability": reference_rows["probability"]})
    cur = labelled[["label", "probability"]].astype({"label": int})
    definition = DataDefinition(numerical_columns=["probability"],
                                classification=[BinaryClassification(target="label", prediction_probas="probability")])
    return Report([ClassificationPreset()]).run(current_data=Dataset.from_pandas(cur, data_definition=definition),
                                                reference_data=Dataset.from_pandas(ref, data_definition=definition))


def evidently_drift(reference: Reference, reference_rows: pd.DataFrame, current: pd.DataFrame, max_psi: float):
    """Evidently's data drift report (PSI per column, prediction included) of ``current`` against ``reference_rows``."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    names = list(reference.features)
    numeric = [n for n, k in reference.features.items() if k == "num"] + ["probability"]
    categorical = [n for n, k in reference.features.items() if k == "str"]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    return Report([DataDriftPreset(method="psi", threshold=max_psi)]).run(
        current_data=Dataset.from_pandas(current[[*names, "probability"]], data_definition=definition),
        reference_data=Dataset.from_pandas(reference_rows[[*names, "probability"]], data_definition=definition))


@task(cache_policy=NO_CACHE)
def judge(settings: Settings, params: MonitorParams, reference: Reference, measured: dict, end: datetime) -> dict:
    """Alert conditions for this window, the changes against open alerts, and the retraining decision."""
    con = open_store(settings)
    try:
        window = {**measured["metrics"], **measured["labels"]}
        current = monitoring.conditions(window, measured["psi"], reference.training_auc, params.alerts)
        opened = open_alerts(con)
        events = monitoring.alert_events(current, opened, params.alerts.clear_ratio)
        breach = monitoring.is_breach(current)
        recent = [r[0] for r in con.execute(
            "select breach from windows where window_end < $end order by window_end desc limit $n",
            {"end": end, "n": params.retrain.windows - 1}).fetchall()][::-1]
        new_labels = window["labelled"]  # matured labels in the look-back the retrained model can learn from
        last = con.execute("select max(created_at) from retrain_decisions where fired").fetchall()[0][0]
        decision = monitoring.retrain_decision([*recent, breach], new_labels, last, datetime.now(UTC).replace(tzinfo=None),
                                               params.retrain)
    finally:
        con.close()
    return {"conditions": [asdict(c) for c in current], "events": [asdict(e) for e in events], "breach": breach,
            "decision": asdict(decision), "open": sorted(opened)}


def open_store(settings: Settings):
    import duckdb

    path = monitoring_dir(settings) / "monitoring.duckdb"
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute(SCHEMA)
    return con


def open_alerts(con) -> set[str]:
    rows = con.execute("select rule, arg_max(event, created_at) from alerts group by rule").fetchall()
    return {rule for rule, event in rows if event == "fired"}


@task(cache_policy=NO_CACHE)
def notify(settings: Settings, params: MonitorParams, events: list[dict], start: datetime, end: datetime) -> str:
    """Each alert change to the Prefect notification block (when named) and always to alerts.jsonl."""
    if not events:
        return "none"
    logger = get_run_logger()
    lines = [f"[{e['event'].upper()}] {e['rule']}: {e['value']:.4f} (threshold {e['threshold']:g}) in window "
             f"{start:%Y-%m-%d %H:%M}..{end:%H:%M} UTC" for e in events]
    for line in lines:
        logger.warning(line)
    via = "file"
    if params.notify_block:
        from prefect.blocks.core import Block

        try:
            Block.load(params.notify_block).notify("\n".join(lines), subject=f"churn monitor: {len(events)} alert change(s)")
            via = f"block {params.notify_block}"
        except Exception as exc:  # the file below still records every alert
            logger.error("notification block %s failed (%s); alerts are in alerts.jsonl", params.notify_block, exc)
            via = f"file (block {params.notify_block} failed: {exc})"
    path = monitoring_dir(settings) / "alerts.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        for e in events:
            handle.write(json.dumps({**e, "window_start": str(start), "window_end": str(end), "delivered_via": via}) + "\n")
    return via


def start_retraining(params: MonitorParams) -> str:
    """Start the train flow (features rebuilt, the result packaged when promoted): a run of the training
    deployment, or a subflow with ``in_process``. Returns what was started."""
    overrides = {**params.retrain.train_overrides, "rebuild_features": True, "package": True, "model_name": params.model_name}
    if params.retrain.in_process:
        from churn.params import TrainParams
        from flows.train import train

        result = train(TrainParams(**overrides))
        return f"in-process train: v{result['version']} {'promoted' if result['promoted'] else 'not promoted'} ({result['decision']})"
    from prefect.deployments import run_deployment

    run = run_deployment(params.retrain.deployment, parameters={"params": overrides}, timeout=0)
    return f"flow run {run.id} of {params.retrain.deployment}"


@task(cache_policy=NO_CACHE)
def trigger_retraining(settings: Settings, params: MonitorParams, end: datetime) -> str:
    """Start retraining and note the run on this window's (already stored) decision."""
    outcome = start_retraining(params)
    con = open_store(settings)
    try:
        con.execute("update retrain_decisions set flow_run = $run where window_end = $end and fired", {"run": outcome, "end": end})
    finally:
        con.close()
    get_run_logger().info("retraining: %s", outcome)
    return outcome


@task(cache_policy=NO_CACHE)
def record(settings: Settings, reference: Reference, measured: dict, verdict: dict, report: Path | None,
           via: str, start: datetime, end: datetime) -> None:
    """One transaction: the window row, its per-feature drift rows, alert changes and the decision."""
    m, lab, rules = measured["metrics"], measured["labels"], {c["rule"]: c for c in verdict["conditions"]}
    now = datetime.now(UTC).replace(tzinfo=None)
    share = rules.get("drifted_share", {}).get("value")
    con = open_store(settings)
    try:
        con.execute("begin")
        con.execute("delete from windows where window_start = $s and window_end = $e", {"s": start, "e": end})
        con.execute("delete from feature_drift where window_end = $e", {"e": end})
        con.execute("insert into windows values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, "
                    "$18, $19, $20, $21)",
                    [start, end, reference.model_version, m["count"], measured["read"]["malformed"], m["positive_rate"],
                     m["probability_mean"], m["probability_std"], m["latency_mean_ms"], m["latency_p99_ms"], lab["labelled"],
                     lab["accuracy"], lab["precision"], lab["recall"], lab["auc"], measured["prediction_psi"], share,
                     rules.get("drifted_share", {}).get("breached"), verdict["breach"], str(report) if report else None, now])
        for name, value in measured["psi"].items():
            con.execute("insert into feature_drift values ($1, $2, $3, $4, $5)",
                        [end, name, value, rules[f"psi:{name}"]["breached"] if f"psi:{name}" in rules else None,
                         measured["carried"][name]])
        for e in verdict["events"]:
            con.execute("insert into alerts values ($1, $2, $3, $4, $5, $6, $7)",
                        [end, e["rule"], e["event"], e["value"], e["threshold"], via, now])
        con.execute("insert into retrain_decisions values ($1, $2, $3, $4, $5)",
                    [end, verdict["decision"]["fire"], verdict["decision"]["reason"], None, now])
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        con.close()


@task(cache_policy=NO_CACHE)
def publish_monitoring(settings: Settings, reference: Reference, measured: dict, verdict: dict, report: Path | None,
                       start: datetime, end: datetime) -> None:
    """A Prefect markdown summary (and a link to the HTML report), and an MLflow run for trends."""
    import mlflow

    m, lab = measured["metrics"], measured["labels"]
    drifted = sorted((v, k) for k, v in measured["psi"].items() if f"psi:{k}" in verdict["open"] or
                     any(e["rule"] == f"psi:{k}" and e["event"] == "fired" for e in verdict["events"]))
    lines = [f"# Monitoring {start:%Y-%m-%d %H:%M}..{end:%H:%M} UTC (champion v{reference.model_version})", "",
             f"- predictions: {m['count']} (malformed lines skipped: {measured['read']['malformed']})",
             f"- positive rate {m['positive_rate']:.3f}, p99 latency {m['latency_p99_ms']:.1f} ms",
             f"- prediction PSI: {measured['prediction_psi'] if measured['prediction_psi'] is None else round(measured['prediction_psi'], 4)}",
             f"- labels: {measured['labels_note']}" + (f"; AUC {lab['auc']:.4f}" if lab["auc"] is not None else ""),
             f"- drifted features: {', '.join(f'{k} (PSI {v:.3f})' for v, k in reversed(drifted)) or 'none'}",
             f"- alert changes: {', '.join(e['event'] + ' ' + e['rule'] for e in verdict['events']) or 'none'}",
             f"- retraining: {'FIRED' if verdict['decision']['fire'] else 'not fired'}: {verdict['decision']['reason']}"]
    create_markdown_artifact("\n".join(lines), key="monitoring-summary", description="monitor window summary")
    if report is not None:
        create_link_artifact(report.resolve().as_uri(), link_text=report.name, key="monitoring-report")
    client = mlflow_store.connect(settings)
    experiment = mlflow_store.experiment_id(settings, client, "churn-monitoring")
    with mlflow.start_run(experiment_id=experiment, run_name=f"window-{end:%Y%m%dT%H%M}"):
        mlflow.set_tags({"champion_version": reference.model_version, "window_start": str(start), "window_end": str(end)})
        values = {"count": m["count"], "positive_rate": m["positive_rate"], "latency_p99_ms": m["latency_p99_ms"],
                  "malformed_lines": measured["read"]["malformed"], **{f"psi.{k}": v for k, v in measured["psi"].items()}}
        values |= {k: v for k, v in lab.items() if v is not None}
        if measured["prediction_psi"] is not None:
            values["prediction_psi"] = measured["prediction_psi"]
        mlflow.log_metrics({k: float(v) for k, v in values.items()})
        if report is not None:
            mlflow.log_artifact(str(report), artifact_path="evidently")
    get_run_logger().info("\n".join(lines))
