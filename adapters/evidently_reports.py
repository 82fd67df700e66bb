"""Evidently HTML reports of a monitor window: data drift, and classification quality on matured labels.

Both run on bounded, fixed-seed samples (the monitor's own figures come from every row).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from churn.contracts import Reference, WindowMeasurement


def render(
    out: Path, reference: Reference, window: WindowMeasurement, sample_rows: int, max_psi: float
) -> Path | None:
    """Write the drift report to ``out`` (and ``quality-*.html`` beside it when labels exist).

    None when the window has nothing to show."""
    if window.sample is None or window.sample.empty:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    reference_rows = reference.frame.sample(
        n=min(sample_rows, len(reference.frame)), random_state=7
    )
    drift_report(reference, reference_rows, window.sample, max_psi).save_html(str(out))
    labelled = window.labelled_sample
    if labelled is not None and labelled["label"].nunique() == 2:
        quality = out.with_name(out.name.replace("drift-", "quality-"))
        quality_report(reference, reference_rows, labelled).save_html(str(quality))
    return out


def quality_report(
    reference: Reference, reference_rows: pd.DataFrame, labelled: pd.DataFrame
) -> Any:
    """Evidently's binary classification quality: matured labels now vs the reference's held-out rows."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    label = [
        c for c in reference_rows.columns if c not in reference.features and c != "probability"
    ][0]
    ref = pd.DataFrame(
        {"label": reference_rows[label].astype(int), "probability": reference_rows["probability"]}
    )
    cur = labelled[["label", "probability"]].astype({"label": int})
    definition = DataDefinition(
        numerical_columns=["probability"],
        classification=[BinaryClassification(target="label", prediction_probas="probability")],
    )
    return Report([ClassificationPreset()]).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )


def drift_report(
    reference: Reference, reference_rows: pd.DataFrame, current: pd.DataFrame, max_psi: float
) -> Any:
    """Evidently's data drift report (PSI per column, prediction included) of ``current`` against ``reference_rows``."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    names = list(reference.features)
    numeric = [n for n, k in reference.features.items() if k != "str"] + [
        "probability"
    ]  # booleans as 0/1
    categorical = [n for n, k in reference.features.items() if k == "str"]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    return Report([DataDriftPreset(method="psi", threshold=max_psi)]).run(
        current_data=Dataset.from_pandas(
            current[[*names, "probability"]], data_definition=definition
        ),
        reference_data=Dataset.from_pandas(
            reference_rows[[*names, "probability"]], data_definition=definition
        ),
    )
