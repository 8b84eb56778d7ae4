"""The task functions of train_pipeline without Airflow: what each leaves on disk as it passes or refuses."""

from dataclasses import asdict
from pathlib import Path

import joblib
import pandas as pd
import pytest

from penguins_pipeline.core.errors import PermanentError
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.core.store import DataNotReadyError
from penguins_pipeline.training import artifacts
from penguins_pipeline.training import steps as train_steps
from penguins_pipeline.training.evaluate import QualityGateError
from penguins_pipeline.training.train import stage_training


@pytest.fixture
def staged(penguins: pd.DataFrame, quick_settings: PipelineSettings) -> dict:
    """What the `train` task returns through XCom."""
    return asdict(stage_training(penguins, quick_settings.artifacts_dir, quick_settings))


def test_gate_verify_promote_publish_the_staged_version(
    staged: dict, quick_settings: PipelineSettings
) -> None:
    decision = train_steps.gate(quick_settings, staged)
    assert decision["promoted"] is True and "no promoted model" in decision["reason"]
    assert train_steps.verify(quick_settings, staged) == staged["version"]
    assert train_steps.promote(quick_settings, staged) == staged["version"]

    assert artifacts.read_current(quick_settings.artifacts_dir) == staged["version"]
    assert not Path(staged["staging_dir"]).exists()
    assert not (
        artifacts.version_dir(quick_settings.artifacts_dir, staged["version"]) / artifacts.HELDOUT_FILE
    ).exists()
    # A retried `promote` (the disk hiccuped after the rename, say) finds the version published and finishes.
    assert train_steps.promote(quick_settings, staged) == staged["version"]


def test_a_refused_model_leaves_no_staging_behind(staged: dict, quick_settings: PipelineSettings) -> None:
    poor = {**staged, "metrics": {**staged["metrics"], "accuracy": 0.9}}
    with pytest.raises(QualityGateError, match=r"0\.9000 < MIN_ACCURACY 0\.9500"):
        train_steps.gate(quick_settings, poor)
    assert list((quick_settings.artifacts_dir / "models").iterdir()) == []


def test_a_staged_version_that_answers_differently_is_discarded(
    staged: dict, quick_settings: PipelineSettings
) -> None:
    heldout_path = Path(staged["staging_dir"]) / artifacts.HELDOUT_FILE
    heldout = joblib.load(heldout_path)
    heldout["probabilities"] = heldout["probabilities"][::-1]
    joblib.dump(heldout, heldout_path)

    with pytest.raises(artifacts.ArtifactError, match="answers differently"):
        train_steps.verify(quick_settings, staged)
    assert list((quick_settings.artifacts_dir / "models").iterdir()) == []
    assert artifacts.read_current(quick_settings.artifacts_dir) is None


@pytest.mark.parametrize("how", ["absolute", "traversal"])
def test_a_staging_path_outside_artifacts_is_never_touched(
    staged: dict, quick_settings: PipelineSettings, tmp_path: Path, how: str
) -> None:
    name = Path(staged["staging_dir"]).name
    victim = tmp_path / "victim" / name
    victim.mkdir(parents=True)
    forged = victim if how == "absolute" else Path(staged["staging_dir"]) / "../../../victim" / name
    with pytest.raises(artifacts.ArtifactError, match="is not a staging folder"):
        train_steps.gate(
            quick_settings.model_copy(update={"min_accuracy": 1.01}), {**staged, "staging_dir": str(forged)}
        )
    assert victim.exists()


def test_rollback_promotes_an_older_version(
    penguins: pd.DataFrame, staged: dict, quick_settings: PipelineSettings
) -> None:
    train_steps.promote(quick_settings, staged)
    newer = stage_training(penguins, quick_settings.artifacts_dir, quick_settings)
    artifacts.publish(Path(newer.staging_dir))
    artifacts.promote(quick_settings.artifacts_dir, newer.version)

    assert train_steps.rollback(quick_settings, staged["version"]) == staged["version"]
    assert artifacts.read_current(quick_settings.artifacts_dir) == staged["version"]
    assert train_steps.prune(quick_settings.model_copy(update={"keep_versions": 1})) == []


def test_warmup_with_an_empty_api_url_is_skipped(quick_settings: PipelineSettings) -> None:
    assert train_steps.warmup(quick_settings) is None


def test_training_before_data_pipeline_says_what_to_run(
    quick_settings: PipelineSettings, tmp_path: Path
) -> None:
    empty = quick_settings.model_copy(update={"penguins_db_url": f"sqlite:///{tmp_path / 'empty.db'}"})
    with pytest.raises(DataNotReadyError, match=r"penguins_clean does not exist .*: run data_pipeline first"):
        train_steps.train(empty)
    assert issubclass(DataNotReadyError, PermanentError)
    assert artifacts.list_versions(quick_settings.artifacts_dir) == []
