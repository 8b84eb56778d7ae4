"""Held-out metrics, cross-validation and the quality gate that guards promotion."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.training import artifacts
from penguins_pipeline.training.evaluate import (
    QualityGateError,
    cross_validation,
    held_out_metrics,
    quality_gate,
    score_current,
)
from penguins_pipeline.training.train import fit, prepare, split, stage_training, train_and_write


def test_metrics_describe_the_held_out_rows(penguins: pd.DataFrame, quick_settings: PipelineSettings) -> None:
    train, test = split(prepare(penguins), 0.2, 42, 5)
    metrics = held_out_metrics(fit(train, quick_settings), test)

    matrix = metrics["confusion_matrix"]
    assert matrix["labels"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert sum(map(sum, matrix["matrix"])) == len(test)
    diagonal = sum(matrix["matrix"][i][i] for i in range(3))
    assert metrics["accuracy"] == pytest.approx(diagonal / len(test))
    supports = {name: c["support"] for name, c in metrics["per_class"].items()}
    assert supports == test["species"].value_counts().to_dict()
    assert 0.9 <= metrics["f1_macro"] <= 1


def test_a_constant_guess_scores_what_it_deserves(
    penguins: pd.DataFrame, quick_settings: PipelineSettings
) -> None:
    """A forest that only answers 'Adelie' scores the share of Adelie, and zero recall elsewhere."""
    train, test = split(prepare(penguins), 0.2, 42, 5)
    stump = fit(train, quick_settings.model_copy(update={"n_estimators": 1, "max_depth": 1}))
    stump.model.estimators_[0].tree_.value[:] = [[1.0, 0.0, 0.0]]
    metrics = held_out_metrics(stump, test)

    assert metrics["accuracy"] == pytest.approx((test["species"] == "Adelie").mean())
    assert metrics["per_class"]["Gentoo"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 24}


def test_the_gate_refuses_below_the_minimum_with_the_numbers() -> None:
    with pytest.raises(
        QualityGateError, match=r"accuracy 0\.9000 < MIN_ACCURACY 0\.9500; nothing was promoted"
    ):
        quality_gate(0.9, None, min_accuracy=0.95, tolerance=0.02)


def test_the_gate_compares_with_the_promoted_model_within_the_tolerance() -> None:
    current = {"version": "20260101T000000000000Z-aaaaaaaa", "accuracy": 1.0}
    assert "GATE_TOLERANCE 0.0200" in quality_gate(0.985, current, min_accuracy=0.95, tolerance=0.02)
    with pytest.raises(
        QualityGateError,
        match=r"0\.9700 is worse than the promoted version 2026.*\(1\.0000 on the same rows\)",
    ):
        quality_gate(0.97, current, min_accuracy=0.95, tolerance=0.02)


def test_an_unusable_promoted_model_does_not_block_a_good_one() -> None:
    unusable = {"version": None, "accuracy": None, "error": "ArtifactError: pca.joblib does not match"}
    assert "promoted model unusable (ArtifactError" in quality_gate(0.96, unusable, 0.95, 0.02)


def test_score_current_evaluates_the_promoted_model_on_the_same_rows(
    penguins: pd.DataFrame, quick_settings: PipelineSettings
) -> None:
    root = quick_settings.artifacts_dir
    _, test = split(prepare(penguins), 0.2, 42, 5)
    live = test.iloc[:10]
    assert score_current(root, test, live) is None

    version = train_and_write(penguins, root, quick_settings)
    artifacts.promote(root, version)
    model = artifacts.load_model(root / "models" / version)
    expected = held_out_metrics(model, test)["accuracy"]
    assert score_current(root, test, live) == {
        "version": version,
        "accuracy": expected,
        "live_accuracy": held_out_metrics(model, live)["accuracy"],
    }
    assert score_current(root, test, live.iloc[:0])["live_accuracy"] is None  # type: ignore[index]

    (root / "models" / version / "model.joblib").write_bytes(b"truncated")
    broken = score_current(root, test, live)
    assert broken is not None and broken["accuracy"] is None
    assert "model.joblib does not match the sha256" in broken["error"]


def test_the_gate_refuses_a_worse_model_and_nothing_is_promoted(
    penguins: pd.DataFrame, quick_settings: PipelineSettings
) -> None:
    root = quick_settings.artifacts_dir
    good = train_and_write(penguins, root, quick_settings)
    artifacts.promote(root, good)
    worse = quick_settings.model_copy(update={"n_estimators": 1, "max_depth": 1, "min_accuracy": 0.0})

    staged = stage_training(penguins, root, worse)
    assert staged.current is not None and staged.current["version"] == good
    with pytest.raises(QualityGateError, match="worse than the promoted version"):
        quality_gate(staged.metrics["accuracy"], staged.current, worse.min_accuracy, worse.gate_tolerance)
    assert artifacts.read_current(root) == good
    assert artifacts.list_versions(root) == [good]


class _FailsToFit(BaseEstimator, ClassifierMixin):
    def fit(self, features: pd.DataFrame, labels: np.ndarray) -> "_FailsToFit":
        raise ValueError("a fold that cannot be fitted")


def test_a_fold_that_fails_fails_the_cross_validation(penguins: pd.DataFrame) -> None:
    """scikit-learn's default scores a failed fold NaN, with a warning: the manifest carried a CV of nan."""
    with pytest.raises(ValueError, match="a fold that cannot be fitted"):
        cross_validation(_FailsToFit(), penguins[["bill_length_mm"]], penguins["species"].to_numpy(), 2, 0)
