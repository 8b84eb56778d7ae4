"""Live accuracy: the true species told through `POST /feedback` (`penguins_feedback`) against what the API
answered (`penguins_predictions`), and the labelled penguins as training rows (`penguins_labelled`).

The rule for contradicting labels: the newest label of a prediction wins (ties: the greater `feedback_id`).
`penguins_labelled` holds one row per labelled prediction that matches a loaded prediction, after that rule:
the features the model saw, the true species, and the provenance (`feedback_id`, `predicted_species`,
`model_version`, `predicted_at`, `labelled_at`). It is rebuilt every run in SQL into a staging table swapped
in atomically (`store.swap_in`), so a reader (train_pipeline) sees the previous table or the new one; a label
whose prediction is not loaded (unknown id, or deleted by retention) stays in `penguins_feedback` and is
counted as unmatched. `penguins_raw` and `penguins_clean` are never touched.

Over the drift window: the labelled predictions answered in it, per model version (accuracy, per-class
recall, confusion matrix), and the labels received in it that match no loaded prediction.
"""

import json
import logging
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from penguins_contract import FEEDBACK_KEY, PREDICTION_KEY
from penguins_pipeline.core import store
from penguins_pipeline.core.schema import LABELLED_TABLE, NUMERIC_FEATURES, RETRAINING_DIR, RETRAINING_FILE
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.monitoring import predictions_log
from penguins_pipeline.monitoring.predictions_log import FEEDBACK, PREDICTIONS

log = logging.getLogger(__name__)


def _labelled_columns(
    predictions: sa.FromClause, feedback: sa.FromClause
) -> dict[str, sa.ColumnElement[Any]]:
    """Each column of `penguins_labelled` and where it comes from (`feedback` is its newest labels)."""
    return {
        PREDICTION_KEY: predictions.c[PREDICTION_KEY],
        FEEDBACK_KEY: feedback.c[FEEDBACK_KEY],
        "species": feedback.c.species,
        **{name: predictions.c[name] for name in ("island", *NUMERIC_FEATURES, "sex")},
        "year": sa.extract("year", predictions.c.time),
        "predicted_species": predictions.c.species,
        "model_version": predictions.c.model_version,
        "predicted_at": predictions.c.time,
        "labelled_at": feedback.c.time,
    }


def labelled_table(name: str = LABELLED_TABLE) -> sa.Table:
    """`penguins_labelled` (or a staging copy): the column types of the tables it is made from, the year an
    integer; no index but the key (SQLite's index names are global: the staging copy would clash)."""
    sources = _labelled_columns(predictions_log.predictions_table(), predictions_log.feedback_table())
    columns = [
        sa.Column(
            column,
            sa.Integer() if column == "year" else source.type,
            primary_key=column == PREDICTION_KEY,
            nullable=False,
        )
        for column, source in sources.items()
    ]
    return sa.Table(name, sa.MetaData(), *columns, **store.MYSQL_TABLE_OPTIONS)


def labelled_query(predictions: sa.Table, feedback: sa.Table) -> sa.Select[Any]:
    """The rows of `penguins_labelled`: each prediction's newest label (the rule) with the prediction."""
    rank = sa.func.row_number().over(
        partition_by=feedback.c[PREDICTION_KEY],
        order_by=(feedback.c.time.desc(), feedback.c[FEEDBACK_KEY].desc()),
    )
    ranked = sa.select(feedback, rank.label("newest")).subquery()
    newest = sa.select(ranked).where(ranked.c.newest == 1).subquery()
    joined = predictions.join(newest, predictions.c[PREDICTION_KEY] == newest.c[PREDICTION_KEY])
    return sa.select(*_labelled_columns(predictions, newest).values()).select_from(joined)


def rebuild_labelled(engine: sa.Engine, run_id: str) -> int:
    """Rebuild `penguins_labelled` from every loaded label, published atomically; its row count."""
    predictions, _ = predictions_log.create_tables(engine, PREDICTIONS)
    feedback, _ = predictions_log.create_tables(engine, FEEDBACK)
    store.drop_leftovers(engine, LABELLED_TABLE)
    staging = labelled_table(store.staging_name(LABELLED_TABLE, run_id))
    staging.create(engine)
    try:
        with engine.begin() as conn:
            names = list(staging.columns.keys())
            rows = conn.execute(staging.insert().from_select(names, labelled_query(predictions, feedback)))
    except BaseException:
        store.drop_quietly(engine, staging.name)
        raise
    store.swap_in(engine, staging.name, LABELLED_TABLE)
    log.info("%s rebuilt: %d labelled predictions", LABELLED_TABLE, rows.rowcount)
    return int(rows.rowcount)


def summarize(
    counts: Iterable[tuple[str, str, str, int]], unmatched: int, min_accuracy: float, min_labelled: int
) -> dict[str, Any]:
    """The report's `live` part from (model version, true species, predicted species, count) rows."""
    by_version: dict[str, Counter[tuple[str, str]]] = {}
    for version, true, predicted, count in counts:
        by_version.setdefault(version, Counter())[(true, predicted)] += count
    versions = {version: _version_summary(pairs) for version, pairs in sorted(by_version.items())}
    labelled = sum(summary["labelled"] for summary in versions.values())
    correct = sum(
        sum(n for (true, predicted), n in pairs.items() if true == predicted) for pairs in by_version.values()
    )
    accuracy = correct / labelled if labelled else None
    return {
        "labelled": labelled,
        "unmatched": unmatched,
        "accuracy": accuracy,
        "min_accuracy": min_accuracy,
        "min_labelled": min_labelled,
        "below_threshold": accuracy is not None and labelled >= min_labelled and accuracy < min_accuracy,
        "by_version": versions,
    }


def _version_summary(pairs: Counter[tuple[str, str]]) -> dict[str, Any]:
    """Accuracy, recall per true species (None for a species only predicted) and the confusion matrix (rows
    true, columns predicted, over every species seen either way)."""
    labels = sorted({name for pair in pairs for name in pair})
    labelled = sum(pairs.values())
    truths = Counter[str]()
    for (true, _), count in pairs.items():
        truths[true] += count
    return {
        "labelled": labelled,
        "accuracy": sum(pairs[(name, name)] for name in labels) / labelled,
        "recall": {name: pairs[(name, name)] / truths[name] if truths[name] else None for name in labels},
        "confusion": {
            "labels": labels,
            "matrix": [[pairs[(true, predicted)] for predicted in labels] for true in labels],
        },
    }


def measure(engine: sa.Engine, start: datetime, min_accuracy: float, min_labelled: int) -> dict[str, Any]:
    """The `live` part over the window from `start` (UTC): `penguins_labelled` answered since then, and the
    labels received since then whose prediction is not loaded."""
    predictions, _ = predictions_log.create_tables(engine, PREDICTIONS)
    feedback, _ = predictions_log.create_tables(engine, FEEDBACK)
    labelled = labelled_table()
    naive_start = start.replace(tzinfo=None)
    matched = sa.exists().where(predictions.c[PREDICTION_KEY] == feedback.c[PREDICTION_KEY])
    unmatched = (
        sa.select(sa.func.count()).select_from(feedback).where(feedback.c.time >= naive_start, ~matched)
    )
    groups = (labelled.c.model_version, labelled.c.species, labelled.c.predicted_species)
    counts = (
        sa.select(*groups, sa.func.count()).where(labelled.c.predicted_at >= naive_start).group_by(*groups)
    )
    with engine.connect() as conn:
        rows = (
            [tuple(row) for row in conn.execute(counts)] if sa.inspect(conn).has_table(LABELLED_TABLE) else []
        )
        lost = int(conn.execute(unmatched).scalar_one())
    return summarize(rows, lost, min_accuracy, min_labelled)  # type: ignore[arg-type]


def read_retraining(artifacts_dir: Path) -> dict[str, Any] | None:
    """train_pipeline's latest decision file, or None when there is none (or it cannot be read: logged)."""
    path = Path(artifacts_dir) / RETRAINING_DIR / RETRAINING_FILE
    try:
        decision = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.warning("The retraining decision %s is left out of the report: %s", path, err)
        return None
    return decision if isinstance(decision, dict) else None


def live_report(settings: PipelineSettings, run_id: str, start: datetime) -> dict[str, Any]:
    """Rebuild `penguins_labelled`, then measure the window from `start`."""
    engine = store.make_engine(settings.penguins_db_url)
    try:
        rebuild_labelled(engine, run_id)
        return measure(engine, start, settings.min_live_accuracy, settings.min_live_labelled)
    finally:
        engine.dispose()
