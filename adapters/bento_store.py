"""The Bento model store: import the current champion with the online snapshot, build the Bento.

The Bento model holds everything the service needs, so serving needs no MLflow server:
``model.skops`` (loaded with the listed trusted types only), ``online_snapshot.parquet`` and
``schema.json`` (entity, feature names and dtypes in model order, decision threshold, lineage).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from adapters import feature_sets, mlflow_store, registry
from churn.contracts import PackagedModel
from churn.settings import ServiceSettings, Settings

ROOT = Path(__file__).resolve().parents[1]


class NothingToPackageError(RuntimeError):
    """There is no approved champion (or no feature set it can serve from) yet."""


def use_bentoml_home(settings: Settings) -> None:
    """BentoML reads BENTOML_HOME when imported: keep its stores inside the project."""
    os.environ.setdefault("BENTOML_HOME", str(settings.bentoml_home))


def import_champion(settings: Settings, model_name: str) -> PackagedModel:
    """Import @champion with the latest online snapshot into the Bento model store, labelled with its lineage.

    The Bento model carries the registered model's name, so the service serves what was packaged.
    """
    use_bentoml_home(settings)
    import bentoml
    import mlflow
    import skops.io

    client = mlflow_store.connect(settings)
    version = registry.alias_version(client, model_name, registry.CHAMPION)
    if version is None:
        raise NothingToPackageError(
            f"{model_name} has no @champion to package: run the train flow until a model is approved"
        )
    details = client.get_model_version(model_name, version)
    uri = f"models:/{model_name}/{version}"
    info = mlflow.models.get_model_info(uri)
    model = mlflow.sklearn.load_model(uri)
    names = info.metadata["feature_names"]
    feature_set = feature_sets.latest(settings.features_dir, settings.feature_set_cache)
    manifest = feature_set.manifest
    dtypes = {f.name: f.dtype for f in manifest.features}
    missing = [n for n in names if n not in dtypes]
    if missing:
        raise NothingToPackageError(
            f"the latest feature set {manifest.version} lacks features the champion needs: {missing}"
        )
    run = client.get_run(details.run_id)
    schema = {
        "entity": manifest.entity,
        "entity_dtype": manifest.entity_dtype,
        "features": {n: dtypes[n] for n in names},
        "bounds": {
            f.name: [f.min, f.max]
            for f in manifest.features
            if f.name in names and (f.min, f.max) != (None, None)
        },
        "decision_threshold": float(model.threshold),
        "model_name": model_name,
        "model_version": str(version),
        "run_id": details.run_id,
        "trained_at": run.info.start_time,
        "feature_set_version": manifest.version,
        "online_as_of": manifest.online_snapshot.as_of.isoformat(),
        "sql_hashes": manifest.sql_hashes,
        "trusted_types": mlflow_store.SKOPS_TRUSTED_TYPES,
    }
    labels = {
        "model_version": str(version),
        "run_id": details.run_id,
        "feature_set": manifest.version,
        **{f"sql_{view}": h for view, h in manifest.sql_hashes.items()},
    }
    with bentoml.models.create(model_name, labels=labels, metadata={"mlflow_uri": uri}) as ref:
        target = Path(ref.path)
        skops.io.dump(model, target / "model.skops")
        feature_sets.copy_table(
            settings,
            feature_set.path / feature_sets.ONLINE_SNAPSHOT,
            target / "online_snapshot.parquet",
            manifest.entity,
        )
        (target / "schema.json").write_text(json.dumps(schema, indent=2, default=str))
    return PackagedModel(str(ref.tag), str(version), details.run_id, labels)


def build_bento(settings: Settings, packaged: PackagedModel) -> PackagedModel:
    """`bentoml build` of bentofile.yaml, labelled with the packaged model's lineage."""
    use_bentoml_home(settings)
    import dataclasses

    import bentoml

    # the build imports the service, whose model reference resolves once per import: drop an earlier
    # import (a second package run in this process) so the reference points at the model just imported
    for module in [m for m in sys.modules if m == "bentos" or m.startswith("bentos.")]:
        del sys.modules[module]
    # the names travel in the Bento (its arguments), so its image needs no CHURN_MODEL_NAME
    names = {
        "model_name": settings.model_name,
        "service_name": ServiceSettings.from_env().service_name,
    }
    bento = bentoml.bentos.build_bentofile(
        str(ROOT / "bentofile.yaml"), build_ctx=str(ROOT), labels=packaged.labels, args=names
    )
    models = [str(m.tag) for service in bento.info.services for m in service.models]
    if packaged.tag not in models:
        raise RuntimeError(
            f"bento {bento.tag} references {models}, not the packaged model {packaged.tag}"
        )
    return dataclasses.replace(packaged, bento=str(bento.tag), bento_path=str(bento.path))


def export_bento(settings: Settings, packaged: PackagedModel, target: str) -> PackagedModel:
    """The built Bento as one archive ``<target>/<name>-<version>.bento`` (BentoML writes it
    through fsspec, so ``target`` may be ``s3://...``)."""
    use_bentoml_home(settings)
    import dataclasses

    import bentoml

    if packaged.bento is None:
        raise ValueError("export_bento needs a built Bento: run build_bento first")
    name, version = packaged.bento.split(":")
    url = bentoml.bentos.export_bento(packaged.bento, f"{target}/{name}-{version}.bento")
    return dataclasses.replace(packaged, bento_url=str(url))


def bento_model_version(settings: Settings, bento: str) -> str:
    """The model version a built Bento serves (its ``model_version`` label, set by ``build_bento``)."""
    use_bentoml_home(settings)
    import bentoml

    found = bentoml.bentos.get(bento)
    version = found.info.labels.get("model_version")
    if version is None:
        raise LookupError(
            f"bento {found.tag} carries no model_version label: rebuild it with `make package`"
        )
    return str(version)


def sample_ids(settings: Settings, bento: str, n: int = 3) -> list[object]:
    """``n`` entity ids from the online snapshot a Bento's model carries (for smoke predictions)."""
    use_bentoml_home(settings)
    import bentoml
    import pyarrow.parquet as pq

    found = bentoml.bentos.get(bento)
    model = bentoml.models.get(found.info.services[0].models[0].tag)
    entity = json.loads((Path(model.path) / "schema.json").read_text())["entity"]
    table = pq.read_table(Path(model.path) / "online_snapshot.parquet", columns=[entity])
    return table.column(0).slice(0, n).to_pylist()
