"""How good a model is: held-out metrics, cross-validation, and the quality gate that guards promotion."""

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from sklearn.model_selection import StratifiedKFold, cross_validate

from penguins_pipeline.core.errors import PermanentError
from penguins_pipeline.core.schema import TARGET
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.training import artifacts
from penguins_pipeline.training.model import TrainedModel

log = logging.getLogger(__name__)


class QualityGateError(PermanentError, RuntimeError):
    """The new model is not good enough to replace what is served."""


def held_out_metrics(model: TrainedModel, test: pd.DataFrame) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1 and confusion matrix on rows the model never saw."""
    classes = [str(c) for c in model.label_encoder.classes_]
    truth = test[TARGET].to_numpy(dtype=str)
    predicted = model.predict(test).astype(str)
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=classes, zero_division=0
    )
    return {
        "rows": len(test),
        "accuracy": float(accuracy_score(truth, predicted)),
        "f1_macro": float(f1_score(truth, predicted, labels=classes, average="macro", zero_division=0)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": {
            "labels": classes,
            "matrix": confusion_matrix(truth, predicted, labels=classes).tolist(),
        },
    }


def cross_validation(
    estimator: BaseEstimator, features: pd.DataFrame, labels: np.ndarray, folds: int, random_state: int
) -> dict[str, Any]:
    """Stratified k-fold on the training split; the estimator is a whole pipeline, so each fold fits its own
    preprocessing and nothing leaks from the validation fold."""
    scores = cross_validate(
        estimator,
        features,
        labels,
        cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state),
        scoring=["accuracy", "f1_macro"],
        error_score="raise",  # a failing fold fails the training, never a NaN score that passes unseen
    )
    return {
        "folds": folds,
        "rows": len(features),
        "accuracy_mean": float(scores["test_accuracy"].mean()),
        "accuracy_std": float(scores["test_accuracy"].std()),
        "f1_macro_mean": float(scores["test_f1_macro"].mean()),
        "f1_macro_std": float(scores["test_f1_macro"].std()),
    }


def accuracy(model: TrainedModel, rows: pd.DataFrame) -> float | None:
    """Share of `rows` whose species the model answers; None for no rows (nothing to score on)."""
    if rows.empty:
        return None
    return float(accuracy_score(rows[TARGET].to_numpy(dtype=str), model.predict(rows).astype(str)))


def score_current(artifacts_dir: Path, test: pd.DataFrame, live: pd.DataFrame) -> dict[str, Any] | None:
    """The promoted model (the champion) scored on the candidate's held-out rows and on the live test rows,
    loaded from its version folder by the pipeline's own loader; None when nothing is promoted.

    A promoted model that cannot be loaded or scored (corrupt files, another feature schema) is reported with
    the reason and treated as absent: it is what needs replacing, so it must not block a model that passes the
    absolute threshold.
    """
    try:
        version = artifacts.read_current(artifacts_dir)
        if version is None:
            return None
        folder = artifacts.version_dir(artifacts_dir, version)
        artifacts.verify_files(folder)
        model = artifacts.load_model(folder)
        scores = {"accuracy": accuracy(model, test), "live_accuracy": accuracy(model, live)}
    except Exception as err:  # any failure means "no usable baseline", and the reason is kept
        log.warning("The promoted model cannot be scored, so the gate ignores it: %s", err)
        return {"version": None, "accuracy": None, "error": f"{type(err).__name__}: {err}"}
    return {"version": version, **scores}


def quality_gate(
    accuracy: float, current: dict[str, Any] | None, min_accuracy: float, tolerance: float
) -> str:
    """Pass (returning why) or raise with the metrics and thresholds, so a failed run explains itself."""
    if accuracy < min_accuracy:
        raise QualityGateError(
            f"quality gate refused the new model: held-out accuracy {accuracy:.4f} < MIN_ACCURACY "
            f"{min_accuracy:.4f}; nothing was promoted"
        )
    if current is None or current.get("accuracy") is None:
        reason = "no promoted model" if current is None else f"promoted model unusable ({current['error']})"
        return f"accuracy {accuracy:.4f} >= MIN_ACCURACY {min_accuracy:.4f}; {reason}"
    floor = current["accuracy"] - tolerance
    if accuracy < floor:
        raise QualityGateError(
            f"quality gate refused the new model: held-out accuracy {accuracy:.4f} is worse than the "
            f"promoted version {current['version']} ({current['accuracy']:.4f} on the same rows) by more "
            f"than GATE_TOLERANCE {tolerance:.4f}; nothing was promoted"
        )
    return (
        f"accuracy {accuracy:.4f} >= MIN_ACCURACY {min_accuracy:.4f} and >= promoted {current['version']} "
        f"{current['accuracy']:.4f} - GATE_TOLERANCE {tolerance:.4f}"
    )


def challenge(
    candidate: Mapping[str, Any],
    current: dict[str, Any] | None,
    settings: PipelineSettings,
) -> tuple[dict[str, Any], bool]:
    """Whether the candidate (its held-out `metrics`) replaces the champion (`current`), with both scores and
    one readable reason; the flag says the held-out gate refused it (a failed run, as the gate always did),
    rather than the live comparison (a kept champion, which is not a failure).

    Rule: the quality gate on the held-out rows; then, when a usable champion exists and at least
    MIN_LIVE_LABELLED live test rows do, strictly better live accuracy than the champion's.
    """
    live = candidate["live"]
    champion = current if current is not None and current.get("accuracy") is not None else None
    scores: dict[str, Any] = {
        "champion": champion["version"] if champion else None,
        "heldout": {
            "rows": candidate["rows"],
            "candidate": candidate["accuracy"],
            "champion": champion["accuracy"] if champion else None,
        },
        "live": {
            "rows": live["rows"],
            "candidate": live["accuracy"],
            "champion": champion.get("live_accuracy") if champion else None,
        },
    }
    try:
        verdict = quality_gate(candidate["accuracy"], current, settings.min_accuracy, settings.gate_tolerance)
    except QualityGateError as refused:
        return {**scores, "promoted": False, "reason": str(refused)}, True
    if champion is None:
        return {**scores, "promoted": True, "reason": f"held-out gate passed: {verdict}"}, False
    if live["rows"] < settings.min_live_labelled:
        reason = (
            f"held-out gate passed: {verdict}; {live['rows']} live test rows < MIN_LIVE_LABELLED "
            f"{settings.min_live_labelled}, so the held-out gate alone decides"
        )
        return {**scores, "promoted": True, "reason": reason}, False
    better = live["accuracy"] > champion["live_accuracy"]
    comparison = (
        f"live accuracy {live['accuracy']:.4f} {'>' if better else '<='} champion {champion['version']} "
        f"{champion['live_accuracy']:.4f} on the {live['rows']} newest labelled rows"
    )
    if better:
        return {**scores, "promoted": True, "reason": f"held-out gate passed and {comparison}"}, False
    reason = f"challenger rejected, champion {champion['version']} kept: {comparison}"
    return {**scores, "promoted": False, "reason": reason}, False
