"""A hyperparameter sweep (`make sweep`): forest settings compared by cross-validated macro-F1 as MLflow runs
nested under one parent run; the best is trained as a full version, recorded and registered.

Each variation is scored by stratified k-fold cross-validation on the training split only (the held-out rows
stay unseen, as in train_pipeline). The winner is trained, staged, verified and published like any version,
then judged by the same quality gate as train_pipeline: it becomes the registry's `challenger` only if it
passes, and never the `champion` by itself (`make rollback VERSION=<id>` promotes it, or a train_pipeline run
with its settings, which passes the gate again).
"""

import argparse
import itertools
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.pipeline import make_pipeline

from penguins_contract import registry
from penguins_pipeline.core.schema import FEATURES, TARGET
from penguins_pipeline.core.settings import PipelineSettings, get_settings
from penguins_pipeline.core.store import read_clean
from penguins_pipeline.training import artifacts, tracking
from penguins_pipeline.training.evaluate import QualityGateError, cross_validation, quality_gate
from penguins_pipeline.training.train import (
    CV_MAX_ROWS,
    build_forest,
    build_preprocessor,
    prepare,
    split,
    stage_training,
    stratified_rows,
)

log = logging.getLogger(__name__)

# 4 x 2 x 3 = 24 variations of the forest's settings (PipelineSettings field names).
GRID: dict[str, tuple[Any, ...]] = {
    "n_estimators": (25, 50, 100, 200),
    "max_depth": (None, 5),
    "min_samples_leaf": (1, 2, 4),
}
SELECTION_METRIC = "cv_f1_macro_mean"


@dataclass(frozen=True)
class SweepResult:
    parent_run_id: str
    variations: int
    best: dict[str, Any]
    best_score: float
    version: str
    registered_version: str
    challenger: bool
    verdict: str
    seconds: float


def variations(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def sweep(
    settings: PipelineSettings, clean: pd.DataFrame, grid: Mapping[str, Sequence[Any]] = GRID
) -> SweepResult:
    """Score every variation as a nested run, then train, register and gate the best one."""
    import mlflow

    started = time.perf_counter()
    tracking.connect(settings)
    tracking.experiment_id()
    data = prepare(clean)
    train, _ = split(data, settings.test_fraction, settings.random_state, settings.cv_folds)
    labels = train[TARGET].to_numpy(dtype=str)
    rows = stratified_rows(labels, CV_MAX_ROWS, settings.random_state)
    candidates = variations(grid)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with mlflow.start_run(run_name=f"sweep-{stamp}", tags={"sweep": "parent"}) as parent:
        mlflow.log_params(
            {"variations": len(candidates), "grid": json.dumps(grid), "cv_folds": settings.cv_folds}
        )
        scores = []
        for number, variation in enumerate(candidates):
            candidate = settings.model_copy(update=variation)
            cv = cross_validation(
                make_pipeline(build_preprocessor(), build_forest(candidate, len(rows))),
                train[FEATURES].iloc[rows],
                labels[rows],
                settings.cv_folds,
                settings.random_state,
            )
            with mlflow.start_run(run_name=f"variation-{number:02d}", nested=True, tags={"sweep": "child"}):
                mlflow.log_params({**variation, "cv_folds": settings.cv_folds})
                mlflow.log_metrics(
                    {f"cv_{key}": float(v) for key, v in cv.items() if key.endswith(("_mean", "_std"))}
                )
            scores.append(cv["f1_macro_mean"])
        best_index = max(range(len(candidates)), key=lambda i: scores[i])  # the first of equals
        best = candidates[best_index]
        mlflow.log_params({f"best_{key}": value for key, value in best.items()})
        mlflow.log_metric(f"best_{SELECTION_METRIC}", scores[best_index])

        winner = settings.model_copy(update=best)
        staged = stage_training(clean, settings.artifacts_dir, winner)
        artifacts.verify_staged(Path(staged.staging_dir))
        folder = artifacts.publish(Path(staged.staging_dir))
        tracking.record_run(settings, folder, {"sweep": "winner"}, nested=True)
        number_registered = tracking.register(settings, folder)
        try:
            verdict = quality_gate(
                staged.metrics["accuracy"], staged.current, settings.min_accuracy, settings.gate_tolerance
            )
            passed = True
        except QualityGateError as err:
            verdict, passed = str(err), False
        if passed:
            tracking.set_alias(settings, registry.CHALLENGER, folder)
        mlflow.set_tags({"best_version": staged.version, "gate": "passed" if passed else "refused"})
    return SweepResult(
        parent_run_id=str(parent.info.run_id),
        variations=len(candidates),
        best=best,
        best_score=scores[best_index],
        version=staged.version,
        registered_version=number_registered,
        challenger=passed,
        verdict=verdict,
        seconds=time.perf_counter() - started,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m penguins_pipeline.training.sweep", description=__doc__)
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = get_settings()
    if not tracking.enabled(settings):
        print("error: a sweep records into MLflow: set MLFLOW_TRACKING_URI", file=sys.stderr)
        return 2
    try:
        result = sweep(settings, read_clean(settings.penguins_db_url))
    except tracking.TrackingUnavailableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(
        f"{result.variations} variations in {result.seconds:.1f} s (parent run {result.parent_run_id}); best "
        f"by cross-validated macro-F1 {result.best_score:.4f}: {result.best}\n"
        f"version {result.version} registered as {registry.REGISTERED_MODEL} {result.registered_version}; "
        f"quality gate: {result.verdict}\n"
        + (
            f"it is the `{registry.CHALLENGER}` now; serve it with: make rollback VERSION={result.version}"
            if result.challenger
            else "not a challenger: the promoted version stays"
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
