"""The steps of `monitor_pipeline`, one function per task, taking and returning only small values (XCom).

`load` brings the API's prediction log into `penguins_predictions` and its feedback log into
`penguins_feedback`, and applies the retention to both; `check_drift` rebuilds `penguins_labelled` and
measures the live accuracy over the window (see `live`), compares the window's predictions with the training
split of the model that answered them and publishes a report. Which model: the window may hold several
versions (a promotion happened in it); the report judges the newest, the one that answered the latest
prediction, on its own predictions only (mixing versions would compare a model's inputs with another model's
training data), and lists the others with their counts.
Testable without Airflow.
"""

import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sqlalchemy as sa

import penguins_contract as contract
from penguins_pipeline.core import store
from penguins_pipeline.core.schema import CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES, TARGET
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.monitoring import drift, drift_report, live, predictions_log
from penguins_pipeline.monitoring.predictions_log import FEEDBACK, PREDICTIONS

log = logging.getLogger(__name__)
REPORT_SCHEMA_VERSION = 1
# Rows fetched at a time while sampling the window.
SAMPLE_CHUNK_ROWS = 20_000


def load(settings: PipelineSettings) -> dict[str, Any]:
    """Load what is new in PREDICTIONS_DIR (predictions, then labels), then apply PREDICTIONS_RETENTION_DAYS
    to each; the predictions' counts at the top, the labels' under `feedback`."""
    engine = store.make_engine(settings.penguins_db_url)
    folder, days = settings.predictions_dir, settings.predictions_retention_days
    done = {}
    try:
        for kind in (PREDICTIONS, FEEDBACK):
            loaded = predictions_log.load_folder(engine, folder, kind=kind)
            retention = predictions_log.apply_retention(engine, folder, days, kind=kind)
            done[kind] = {**asdict(loaded), "retention": asdict(retention)}
    finally:
        engine.dispose()
    return {**done[PREDICTIONS], "feedback": done[FEEDBACK]}


@dataclass
class Window:
    """The predictions of the drift window, in bounded memory whatever their number: how many per model
    version (counted in SQL), and a seeded sample of the newest version's (all of them when few enough)."""

    versions: dict[str, int]
    model_version: str | None  # the newest: the one that answered the latest prediction
    rows: int  # the newest version's predictions in the window
    sample: pd.DataFrame  # FEATURES and TARGET of at most DRIFT_SAMPLE_ROWS of them


def read_window(settings: PipelineSettings, start: datetime) -> Window:
    """The predictions answered since `start` (UTC): counted per version in SQL, the newest version's sampled.

    The sample is uniform and seeded (RANDOM_STATE): each streamed row gets a random priority and the
    DRIFT_SAMPLE_ROWS lowest are kept, so memory holds the sample and one chunk, never the window. On MySQL
    a seeded `RAND(seed) < p` (a little over the sample's share) thins the rows in the server first, so only
    about the sample crosses the wire: one scan of the window, no sort (`ORDER BY RAND()` sorts all of it)."""
    engine = store.make_engine(settings.penguins_db_url)
    naive_start = start.replace(tzinfo=None)
    try:
        table, _ = predictions_log.create_tables(engine)
        in_window = table.c.time >= naive_start
        counts = sa.select(table.c.model_version, sa.func.count(), sa.func.max(table.c.time)).where(in_window)
        with engine.connect() as conn:
            per_version = conn.execute(counts.group_by(table.c.model_version)).all()
        columns = [*FEATURES, TARGET]
        if not per_version:
            return Window({}, None, 0, pd.DataFrame(columns=columns))
        version, rows, _ = max(per_version, key=lambda row: (row[2], row[0]))
        query = sa.select(*(table.c[name] for name in columns))
        query = query.where(in_window, table.c.model_version == version)
        wanted = settings.drift_sample_rows
        if rows > wanted and engine.dialect.name == "mysql":
            # A margin of five standard deviations: fewer than `wanted` rows pass with a negligible chance.
            share = min((wanted + 5 * math.sqrt(wanted) + 10) / rows, 1.0)
            query = query.where(sa.func.rand(settings.random_state) < share)
        with engine.connect().execution_options(stream_results=True, yield_per=SAMPLE_CHUNK_ROWS) as conn:
            chunks = conn.execute(query).partitions()
            sample = seeded_sample(chunks, columns, wanted, settings.random_state)
        versions = {str(name): int(count) for name, count, _ in per_version}
        return Window(versions, str(version), int(rows), sample)
    finally:
        engine.dispose()


def seeded_sample(
    chunks: Iterable[Sequence[Sequence[Any]]], columns: list[str], size: int, seed: int
) -> pd.DataFrame:
    """A uniform sample of at most `size` of the rows of `chunks` (all of them when fewer), the same for the
    same rows in the same order and `seed`; holds at most twice `size` rows plus one chunk."""
    rng = np.random.default_rng(seed)
    frames: list[pd.DataFrame] = []
    priorities: list[np.ndarray] = []

    def lowest(keep: int) -> None:
        """Keep the `keep` rows of lowest priority, in that order."""
        frame, priority = pd.concat(frames, ignore_index=True), np.concatenate(priorities)
        chosen = np.argsort(priority, kind="stable")[:keep]
        frames[:], priorities[:] = [frame.iloc[chosen].reset_index(drop=True)], [priority[chosen]]

    for chunk in chunks:
        frames.append(pd.DataFrame.from_records(list(map(tuple, chunk)), columns=columns))
        priorities.append(rng.random(len(chunk)))
        if sum(map(len, priorities)) > 2 * size:
            lowest(size)
    if not frames:
        return pd.DataFrame(columns=columns)
    lowest(size)
    return frames[0]


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
    settings: PipelineSettings, run_id: str, now: datetime, window: Window
) -> tuple[dict[str, Any], pd.DataFrame | None, pd.DataFrame | None]:
    """The report's JSON, and the training and recent rows it compared (None when nothing was judged). The
    statistics are computed on the window's sample: `n_predictions` counts the version's predictions in the
    window, `n_sampled` those judged."""
    start = now - timedelta(hours=settings.drift_window_hours)
    version, recent = window.model_version, window.sample
    report: dict[str, Any] = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "run_id": run_id,
        "created_at": now.isoformat(),
        "model_version": version,
        "window": {"start": start.isoformat(), "end": now.isoformat(), "hours": settings.drift_window_hours},
        "n_predictions": window.rows,
        "n_sampled": len(recent),
        "n_training": 0,
        "versions_in_window": window.versions,
        "thresholds": {
            "p_value": settings.drift_p_value,
            "psi": settings.drift_psi,
            "min_records": settings.drift_min_records,
            "sample_rows": settings.drift_sample_rows,
        },
        "status": "not_enough_data",
        "drifted": False,
        "drifted_features": [],
        "features": {},
        "species": None,
    }
    if window.rows < settings.drift_min_records:
        report["message"] = (
            f"Not enough data: {window.rows} predictions of model {version or '(none)'} in the last "
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
        )
        + (
            f" Judged on a seeded sample of {len(recent):,} of the {window.rows:,} predictions "
            "(DRIFT_SAMPLE_ROWS)."
            if len(recent) < window.rows
            else ""
        ),
    )
    return report, training, recent


def check_drift(settings: PipelineSettings, run_id: str, now: datetime | None = None) -> dict[str, Any]:
    """Judge the window, publish the report (then prune old ones); return what the next task needs."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    start = now - timedelta(hours=settings.drift_window_hours)
    window = read_window(settings, start)
    report, training, recent = build_report(settings, run_id, now, window)
    report["live"] = live.live_report(settings, run_id, start)
    report["retraining"] = live.read_retraining(settings.artifacts_dir)
    folder = drift_report.publish(settings.artifacts_dir, report, training, recent)
    removed = drift_report.prune(settings.artifacts_dir, settings.drift_keep_reports)
    log.info("%s Report: %s (removed old reports: %s)", report["message"], folder, removed or "none")
    measured = report["live"]
    reasons = (["drift"] if report["drifted"] else []) + (
        ["live_accuracy"] if measured["below_threshold"] else []
    )
    return {
        "reasons": reasons,
        "live": {name: measured[name] for name in ("labelled", "accuracy", "min_accuracy", "min_labelled")},
        "report": str(folder),
        "status": report["status"],
        "drifted": report["drifted"],
        "drifted_features": report["drifted_features"],
        "model_version": report["model_version"],
        "n_predictions": report["n_predictions"],
    }
