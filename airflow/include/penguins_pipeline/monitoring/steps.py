"""The steps of `monitor_pipeline`, one function per task, taking and returning only small values (XCom).

`load` brings the API's prediction log into `penguins_predictions` and applies the retention; `drift`
compares the window's predictions with the training split of the model that answered them and publishes a
report. Which model: the window may hold several versions (a promotion happened in it); the report judges the
newest, the one that answered the latest prediction, on its own predictions only (mixing versions would
compare a model's inputs with another model's training data), and lists the others with their counts.
Testable without Airflow.
"""

import json
import logging
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import joblib
import pandas as pd
import sqlalchemy as sa

import penguins_contract as contract
from penguins_pipeline.core import store
from penguins_pipeline.core.schema import CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES, TARGET
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.monitoring import drift, drift_report, predictions_log

log = logging.getLogger(__name__)
REPORT_SCHEMA_VERSION = 1


def load(settings: PipelineSettings) -> dict[str, Any]:
    """Load what is new in PREDICTIONS_DIR, then apply PREDICTIONS_RETENTION_DAYS."""
    engine = store.make_engine(settings.penguins_db_url)
    try:
        loaded = predictions_log.load_folder(engine, settings.predictions_dir)
        retention = predictions_log.apply_retention(
            engine, settings.predictions_dir, settings.predictions_retention_days
        )
    finally:
        engine.dispose()
    return {**asdict(loaded), "retention": asdict(retention)}


def read_window(settings: PipelineSettings, start: datetime) -> pd.DataFrame:
    """The predictions answered since `start` (UTC), oldest first."""
    engine = store.make_engine(settings.penguins_db_url)
    try:
        table, _ = predictions_log.create_tables(engine)
        columns = [table.c[name] for name in ("time", "model_version", *FEATURES, TARGET)]
        query = sa.select(*columns).where(table.c.time >= start.replace(tzinfo=None)).order_by(table.c.time)
        with engine.connect() as conn:
            return pd.DataFrame(conn.execute(query).all(), columns=[c.name for c in columns])
    finally:
        engine.dispose()


def read_training(settings: PipelineSettings, version: str) -> pd.DataFrame | None:
    """The training split of `version` (features and species), or None if that version is gone or unknown."""
    try:
        folder = contract.version_dir(settings.artifacts_dir, version)
        split = joblib.load(folder / contract.SPLIT_FILE)
        classes = json.loads((folder / contract.MANIFEST_FILE).read_text())["classes"]
    except (contract.ContractError, OSError, KeyError, ValueError) as err:
        log.warning("No training data for model version %r: %s", version, err)
        return None
    training = split["features_raw"].copy()
    training[TARGET] = [classes[int(label)] for label in split["labels_encoded"]]
    return training


def build_report(
    settings: PipelineSettings, run_id: str, now: datetime, window: pd.DataFrame
) -> tuple[dict[str, Any], pd.DataFrame | None, pd.DataFrame | None]:
    """The report's JSON, and the training and recent rows it compared (None when nothing was judged)."""
    start = now - timedelta(hours=settings.drift_window_hours)
    versions = window["model_version"].value_counts().to_dict() if len(window) else {}
    version = str(window["model_version"].iloc[-1]) if len(window) else None
    recent = window[window["model_version"] == version] if version else window
    report: dict[str, Any] = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "run_id": run_id,
        "created_at": now.isoformat(),
        "model_version": version,
        "window": {"start": start.isoformat(), "end": now.isoformat(), "hours": settings.drift_window_hours},
        "n_predictions": len(recent),
        "n_training": 0,
        "versions_in_window": {str(v): int(n) for v, n in versions.items()},
        "thresholds": {
            "p_value": settings.drift_p_value,
            "psi": settings.drift_psi,
            "min_records": settings.drift_min_records,
        },
        "status": "not_enough_data",
        "drifted": False,
        "drifted_features": [],
        "features": {},
        "species": None,
    }
    if len(recent) < settings.drift_min_records:
        report["message"] = (
            f"Not enough data: {len(recent)} predictions of model {version or '(none)'} in the last "
            f"{settings.drift_window_hours:g} hours, at least {settings.drift_min_records} are needed "
            "(DRIFT_MIN_RECORDS). Nothing is flagged."
        )
        return report, None, None
    training = read_training(settings, str(version))
    if training is None:
        report["status"] = "no_reference"
        report["message"] = (
            f"The training data of model {version} is gone from ARTIFACTS_DIR (pruned?): nothing to compare "
            "with. Nothing is flagged."
        )
        return report, None, None
    thresholds = drift.Thresholds(settings.drift_p_value, settings.drift_psi)
    judged = drift.compare(training, recent, NUMERIC_FEATURES, [*CATEGORICAL_FEATURES, TARGET], thresholds)
    species = judged.pop(TARGET)
    drifted = [name for name, result in judged.items() if result.drifted] + (
        ["species"] if species.drifted else []
    )
    report.update(
        status="ok",
        n_training=len(training),
        drifted=bool(drifted),
        drifted_features=drifted,
        features={name: result.as_dict() for name, result in judged.items()},
        species=species.as_dict(),
        message=(
            f"Drift in {', '.join(drifted)}."
            if drifted
            else "No drift: every feature and the species are stable."
        ),
    )
    return report, training, recent


def check_drift(settings: PipelineSettings, run_id: str, now: datetime | None = None) -> dict[str, Any]:
    """Judge the window, publish the report (then prune old ones); return what the next task needs."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    window = read_window(settings, now - timedelta(hours=settings.drift_window_hours))
    report, training, recent = build_report(settings, run_id, now, window)
    folder = drift_report.publish(settings.artifacts_dir, report, training, recent)
    removed = drift_report.prune(settings.artifacts_dir, settings.drift_keep_reports)
    log.info("%s Report: %s (removed old reports: %s)", report["message"], folder, removed or "none")
    return {
        "report": str(folder),
        "status": report["status"],
        "drifted": report["drifted"],
        "drifted_features": report["drifted_features"],
        "model_version": report["model_version"],
        "n_predictions": report["n_predictions"],
    }
