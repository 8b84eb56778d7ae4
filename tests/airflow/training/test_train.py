"""Split, fit and stage: no leak from the held-out rows, reproducible, and clear refusals of thin data."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import penguins_contract as contract
from penguins_pipeline.core.schema import FEATURES, NUMERIC_FEATURES, TARGET
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.training import artifacts, train
from penguins_pipeline.training.train import (
    TrainingDataError,
    build_forest,
    fit,
    prepare,
    split,
    stage_training,
    train_and_write,
    training_files,
)


def test_the_preprocessor_sees_only_training_rows(
    penguins: pd.DataFrame, quick_settings: PipelineSettings
) -> None:
    train, test = split(prepare(penguins), 0.2, 42, 5)
    model = fit(train, quick_settings)
    scaler = model.preprocessor.named_transformers_["numeric"]

    assert scaler.n_samples_seen_ == len(train) == 266
    np.testing.assert_allclose(scaler.mean_, train[NUMERIC_FEATURES].mean().to_numpy())
    assert not np.allclose(scaler.mean_, penguins[NUMERIC_FEATURES].mean().to_numpy())
    assert model.pca.n_samples_ == len(train)
    assert sum(model.model.estimators_[0].tree_.weighted_n_node_samples[:1]) == len(train)
    assert set(train.index).isdisjoint(test.index)


def test_the_split_is_stratified_and_ignores_row_order(penguins: pd.DataFrame) -> None:
    train, test = split(prepare(penguins), 0.2, 42, 5)
    shuffled_train, shuffled_test = split(prepare(penguins.sample(frac=1, random_state=7)), 0.2, 42, 5)

    assert len(test) == 67
    pd.testing.assert_frame_equal(test, shuffled_test)
    pd.testing.assert_frame_equal(train, shuffled_train)
    shares = test[TARGET].value_counts(normalize=True) - penguins[TARGET].value_counts(normalize=True)
    assert shares.abs().max() < 0.02


def test_column_names_become_plain_strings(penguins: pd.DataFrame) -> None:
    class QuotedName(str):  # what SQLAlchemy's quoted_name looks like to pandas
        pass

    data = prepare(penguins.set_axis([QuotedName(c) for c in penguins.columns], axis=1))
    assert {type(c) for c in data.columns} == {str}


def test_preprocessed_columns_are_scaled_measures_then_island_then_sex(
    penguins: pd.DataFrame, quick_settings: PipelineSettings
) -> None:
    model = fit(penguins, quick_settings)
    names = [name.split("__")[1] for name in model.preprocessor.get_feature_names_out()]
    assert names == [
        *NUMERIC_FEATURES,
        "island_Biscoe",
        "island_Dream",
        "island_Torgersen",
        "sex_female",
        "sex_male",
    ]


def test_same_data_and_params_give_the_same_model(
    penguins: pd.DataFrame, quick_settings: PipelineSettings
) -> None:
    first = train_and_write(penguins, quick_settings.artifacts_dir, quick_settings)
    second = train_and_write(
        penguins.sample(frac=1, random_state=3), quick_settings.artifacts_dir, quick_settings
    )
    rows = penguins[FEATURES]

    one, two = (
        artifacts.load_model(artifacts.version_dir(quick_settings.artifacts_dir, v)) for v in (first, second)
    )
    assert first != second
    assert first[-8:] == second[-8:]  # same data fingerprint and params
    np.testing.assert_array_equal(one.predict_proba(rows), two.predict_proba(rows))


def test_default_parameters_reach_the_accuracy_bar(penguins: pd.DataFrame, tmp_path: Path) -> None:
    version = train_and_write(penguins, tmp_path, PipelineSettings(artifacts_dir=tmp_path))
    manifest = json.loads((artifacts.version_dir(tmp_path, version) / "manifest.json").read_text())

    assert manifest["metrics"]["accuracy"] >= 0.95
    assert manifest["metrics"]["cv"]["folds"] == 5
    assert manifest["metrics"]["cv"]["accuracy_mean"] >= 0.95
    assert manifest["data"] | {"fingerprint": None} == {
        "fingerprint": None,
        "source_table": "penguins_clean",
        "rows_total": 333,
        "rows_train": 266,
        "rows_test": 67,
        "sources": {"penguins_clean": 333, "penguins_labelled": 0},
        "rows_live_test": 0,
        "class_counts": {"Adelie": 146, "Chinstrap": 68, "Gentoo": 119},
    }
    assert manifest["species_by_island"]["Torgersen"] == ["Adelie"]
    assert [f["name"] for f in manifest["features"]["numeric"]] == NUMERIC_FEATURES
    assert manifest["features"]["categorical"][1] == {"name": "sex", "categories": ["female", "male"]}


def test_each_tree_sees_a_bounded_sample_only_on_big_data(quick_settings: PipelineSettings) -> None:
    assert build_forest(quick_settings, 266).max_samples is None
    assert build_forest(quick_settings, 800_000).max_samples == quick_settings.max_samples_per_tree


def test_the_chart_sample_is_capped_and_stratified(
    penguins: pd.DataFrame, quick_settings: PipelineSettings
) -> None:
    train, _ = split(prepare(penguins), 0.2, 42, 5)
    model = fit(train, quick_settings)

    small = training_files(model, train, viz_max=3000, random_state=42)
    capped = training_files(model, train, viz_max=100, random_state=42)

    assert len(small[contract.VIZ_FILE]["features_raw"]) == len(train)
    viz = capped[contract.VIZ_FILE]
    assert len(viz["features_raw"]) == len(viz["features_pca"]) == len(viz["labels_encoded"]) == 100
    assert list(viz["features_pca"].columns) == ["pca1", "pca2"]
    assert np.bincount(viz["labels_encoded"]).tolist() == pytest.approx(
        (np.bincount(small[contract.VIZ_FILE]["labels_encoded"]) * 100 / len(train)).tolist(), abs=1
    )
    assert len(capped[contract.SPLIT_FILE]["features_raw"]) == len(train)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (lambda df: df[df[TARGET] == "Adelie"], "needs at least two species"),
        (lambda df: df.groupby(TARGET).head(1), "too few rows"),
        (lambda df: df.head(0), "needs at least two species"),
        (lambda df: df.drop(columns="sex"), "lacks columns ['sex']; run data_pipeline first"),
        (lambda df: df.assign(body_mass_g=np.nan), "missing values in ['body_mass_g']"),
    ],
)
def test_thin_or_broken_data_is_refused_with_the_reason(
    penguins: pd.DataFrame, quick_settings: PipelineSettings, rows, message: str
) -> None:
    with pytest.raises(TrainingDataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        train_and_write(rows(penguins), quick_settings.artifacts_dir, quick_settings)
    assert artifacts.list_versions(quick_settings.artifacts_dir) == []


def test_species_too_thin_to_cross_validate_are_named(penguins: pd.DataFrame) -> None:
    thin = pd.concat(
        [penguins[penguins[TARGET] != "Chinstrap"], penguins[penguins[TARGET] == "Chinstrap"].head(5)]
    )
    with pytest.raises(TrainingDataError, match=r"too few rows of \['Chinstrap'\].*CV_FOLDS=5 training rows"):
        split(prepare(thin), 0.2, 42, 5)


def test_cross_validation_runs_on_a_capped_stratified_sample(
    penguins: pd.DataFrame, quick_settings: PipelineSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = stage_training(penguins, quick_settings.artifacts_dir, quick_settings).metrics["cv"]
    monkeypatch.setattr(train, "CV_MAX_ROWS", 100)
    capped = stage_training(penguins, quick_settings.artifacts_dir, quick_settings).metrics["cv"]

    assert whole["rows"] == 266
    assert capped["rows"] == 100
    assert capped["folds"] == 3 and capped["accuracy_mean"] >= 0.9
