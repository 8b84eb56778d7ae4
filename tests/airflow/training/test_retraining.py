"""Retraining on live labels, challenger against champion, without Airflow: the labelled live penguins of
`penguins_labelled` (a real SQLite or MariaDB table with the columns monitor_pipeline gives it) join the
training data, their newest share is the live test set, and the gate promotes only a challenger that beats
the champion there; the decision lands in ARTIFACTS_DIR/retraining/latest.json."""

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
import sqlalchemy as sa

from penguins_pipeline.core.schema import CLEAN_TABLE, LABELLED_TABLE
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.core.store import DataNotReadyError, read_labelled
from penguins_pipeline.training import artifacts
from penguins_pipeline.training import steps as train_steps
from penguins_pipeline.training.train import data_fingerprint, prepare, split_live, stage_training

if TYPE_CHECKING:
    from conftest import WriteLabelled  # tests/airflow/conftest.py


@pytest.fixture
def settings(quick_settings: PipelineSettings, db_url: str) -> PipelineSettings:
    return quick_settings.model_copy(update={"penguins_db_url": db_url, "min_live_labelled": 20})


@pytest.fixture
def champion(penguins: pd.DataFrame, settings: PipelineSettings) -> str:
    """A version trained on `penguins_clean` alone, promoted as the first run would."""
    staged = asdict(stage_training(penguins, settings.artifacts_dir, settings))
    train_steps.gate(settings, staged)
    train_steps.verify(settings, staged)
    return train_steps.promote(settings, staged)


def latest_decision(settings: PipelineSettings) -> dict:
    return json.loads((settings.artifacts_dir / "retraining" / "latest.json").read_text())


def test_a_challenger_trained_on_the_shifted_colony_beats_the_champion_and_is_promoted(
    penguins: pd.DataFrame,
    settings: PipelineSettings,
    champion: str,
    shifted_colony: pd.DataFrame,
    write_labelled: "WriteLabelled",
) -> None:
    write_labelled(settings.penguins_db_url, shifted_colony)
    staged = asdict(
        stage_training(penguins, settings.artifacts_dir, settings, read_labelled(settings.penguins_db_url))
    )

    decision = train_steps.gate(settings, staged, {"airflow_run_id": "asset_triggered__1"})
    assert decision["promoted"] is True
    assert decision["champion"] == champion and decision["candidate"] == staged["version"]
    live = decision["live"]
    assert live["rows"] == 30
    assert live["candidate"] >= 0.9 and live["champion"] <= 0.5 and live["candidate"] > live["champion"]
    assert decision["heldout"]["candidate"] >= decision["heldout"]["champion"] - settings.gate_tolerance
    assert "held-out gate passed and live accuracy" in decision["reason"]
    assert latest_decision(settings) == decision and decision["dag_run_id"] == "asset_triggered__1"
    assert set(decision) == {
        "time",
        "dag_run_id",
        "candidate",
        "champion",
        "heldout",
        "live",
        "promoted",
        "reason",
    }

    train_steps.verify(settings, staged)
    assert train_steps.promote(settings, staged) == staged["version"]
    manifest = artifacts.read_manifest(artifacts.version_dir(settings.artifacts_dir, staged["version"]))
    # Provenance: 70 older labels trained on, the 30 newest only scored.
    assert manifest["data"]["sources"] == {CLEAN_TABLE: len(penguins), LABELLED_TABLE: 70}
    assert manifest["data"]["rows_live_test"] == 30
    assert manifest["data"]["rows_total"] == len(penguins) + 70


def test_labels_that_contradict_themselves_keep_the_champion_and_the_run_succeeds(
    penguins: pd.DataFrame,
    settings: PipelineSettings,
    champion: str,
    shifted_colony: pd.DataFrame,
    write_labelled: "WriteLabelled",
) -> None:
    # The same colony is labelled Adelie by the older feedback and Chinstrap by the newest: retraining learns
    # the older answer, so it cannot do better than the champion on the newest labels.
    write_labelled(settings.penguins_db_url, shifted_colony, ["Adelie"] * 70 + ["Chinstrap"] * 30)
    staged = asdict(
        stage_training(penguins, settings.artifacts_dir, settings, read_labelled(settings.penguins_db_url))
    )

    decision = train_steps.gate(settings, staged)  # no exception: a kept champion is not a failure
    assert decision["promoted"] is False
    assert decision["live"]["candidate"] <= decision["live"]["champion"]
    assert decision["reason"].startswith(f"challenger rejected, champion {champion} kept: live accuracy")
    assert latest_decision(settings)["promoted"] is False
    assert latest_decision(settings)["candidate"] == staged["version"]
    assert not Path(staged["staging_dir"]).exists()
    assert artifacts.read_current(settings.artifacts_dir) == champion
    assert artifacts.list_versions(settings.artifacts_dir) == [champion]


def test_without_penguins_labelled_training_is_what_it_was(
    penguins: pd.DataFrame, settings: PipelineSettings, champion: str
) -> None:
    labelled = read_labelled(settings.penguins_db_url)
    assert labelled.empty
    staged = asdict(stage_training(penguins, settings.artifacts_dir, settings, labelled))
    manifest = artifacts.read_manifest(Path(staged["staging_dir"]))
    assert manifest["data"]["fingerprint"] == data_fingerprint(prepare(penguins))
    assert manifest["data"]["sources"] == {CLEAN_TABLE: len(penguins), LABELLED_TABLE: 0}

    decision = train_steps.gate(settings, staged)
    assert decision["promoted"] is True
    assert decision["live"] == {"rows": 0, "candidate": None, "champion": None}
    assert "0 live test rows < MIN_LIVE_LABELLED 20, so the held-out gate alone decides" in decision["reason"]


def test_the_live_test_set_is_the_newest_labels_whatever_the_row_order() -> None:
    labelled = pd.DataFrame(
        {"labelled_at": [3, 1, 4, 0, 2, 2], "feedback_id": ["d", "b", "e", "a", "c2", "c1"], "x": range(6)}
    )
    older, newest = split_live(labelled, 0.3)
    assert newest["labelled_at"].tolist() == [3, 4]
    assert older["feedback_id"].tolist() == ["a", "b", "c1", "c2"]
    assert split_live(labelled.iloc[:0], 0.3)[1].empty


def test_a_labelled_table_without_a_needed_column_says_which(settings: PipelineSettings) -> None:
    engine = sa.create_engine(settings.penguins_db_url)
    try:
        pd.DataFrame({"prediction_id": ["p1"], "species": ["Adelie"]}).to_sql(
            LABELLED_TABLE, engine, index=False
        )
    finally:
        engine.dispose()
    with pytest.raises(
        DataNotReadyError, match=r"penguins_labelled .* lacks columns \['island', .*monitor_pipeline"
    ):
        read_labelled(settings.penguins_db_url)
