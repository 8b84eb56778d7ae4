"""The serving export: plain arrays that reproduce the fitted scikit-learn objects, checked when training
and again when the staged files are reloaded; an export that does not reproduce them fails the task."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import penguins_contract as contract
from penguins_pipeline.core.errors import PermanentError
from penguins_pipeline.core.schema import FEATURES, NUMERIC_FEATURES, PHYSICAL_BOUNDS
from penguins_pipeline.core.settings import PipelineSettings
from penguins_pipeline.training import artifacts, export
from penguins_pipeline.training import steps as train_steps
from penguins_pipeline.training.train import fit, stage_training, training_files


@pytest.fixture
def staged(penguins: pd.DataFrame, quick_settings: PipelineSettings) -> dict:
    staging = stage_training(penguins, quick_settings.artifacts_dir, quick_settings)
    return {"version": staging.version, "staging_dir": staging.staging_dir}


def test_the_written_export_is_plain_arrays_that_reproduce_sklearn(
    staged: dict, penguins: pd.DataFrame, quick_settings: PipelineSettings
) -> None:
    folder = Path(staged["staging_dir"])
    model = artifacts.load_model(folder)
    with np.load(folder / contract.SERVING_FILE, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    assert set(arrays) == set(contract.SERVING_ARRAYS)
    assert {a.dtype.kind for a in arrays.values()} <= set("biufU")
    manifest = artifacts.read_manifest(folder)
    assert manifest["files"][contract.SERVING_FILE]["sha256"] == contract.sha256_file(folder / "serving.npz")
    assert arrays["classes"].tolist() == manifest["classes"]
    assert len(arrays["split_labels"]) == manifest["data"]["rows_train"]
    assert len(arrays["reference_proba"]) == min(256, manifest["data"]["rows_train"]) + 64
    export.check_export(arrays, model)
    # The oracle on rows no reference covered: the whole dataset and random penguins, every float equal.
    rng = np.random.default_rng(5)
    random = pd.DataFrame({n: rng.uniform(*PHYSICAL_BOUNDS[n], 500) for n in NUMERIC_FEATURES})
    random["island"] = rng.choice(["Biscoe", "Dream", "Torgersen"], 500)
    random["sex"] = rng.choice(["female", "male"], 500)
    rows = pd.concat([penguins[FEATURES], random[FEATURES]], ignore_index=True)
    categories = {f: arrays[contract.categories_key(f)].tolist() for f in ("island", "sex")}
    encoded = export._encode(
        arrays, rows[NUMERIC_FEATURES].to_numpy(float), export.category_positions(rows, categories)
    )
    assert np.array_equal(encoded, model.preprocessor.transform(rows[FEATURES]))
    assert np.array_equal(export._walk(arrays, encoded), model.model.predict_proba(encoded))
    np.testing.assert_allclose(export._project(arrays, encoded), model.pca.transform(encoded), atol=1e-9)


def threshold_moved(arrays: dict) -> None:
    arrays["forest_threshold"][0] += 1.0  # the first tree's root: most rows change side


def reference_changed(arrays: dict) -> None:
    arrays["reference_proba"][0] = arrays["reference_proba"][0][::-1]


def scale_changed(arrays: dict) -> None:
    arrays["scaler_scale"][0] *= 1 + 1e-12


def array_missing(arrays: dict) -> None:
    del arrays["viz_pca"]


def object_array(arrays: dict) -> None:
    arrays["classes"] = arrays["classes"].astype(object)


@pytest.mark.parametrize(
    ("tamper", "words"),
    [
        (threshold_moved, "forest does not reproduce"),
        (reference_changed, "reference outputs are not the model's"),
        (scale_changed, "scaler and categories do not reproduce"),
        (array_missing, "lacks ['viz_pca']"),
        (object_array, "not numbers or text: ['classes']"),
    ],
)
def test_an_export_that_does_not_reproduce_the_model_is_a_permanent_error(
    penguins: pd.DataFrame, quick_settings: PipelineSettings, tamper, words: str
) -> None:
    train = penguins.sample(frac=0.8, random_state=0)
    model = fit(train, quick_settings)
    arrays = training_files(model, train, 50, 0)[contract.SERVING_FILE]
    tamper(arrays)
    with pytest.raises(export.ExportError) as refused:
        export.check_export(arrays, model)
    assert words in str(refused.value)
    assert isinstance(refused.value, PermanentError)  # the task fails at once, no retries


def test_verify_discards_a_staged_version_whose_export_was_altered(
    staged: dict, quick_settings: PipelineSettings
) -> None:
    """Even with a manifest vouching for the altered file, the reloaded export must reproduce the model."""
    folder = Path(staged["staging_dir"])
    arrays = export.load(folder / contract.SERVING_FILE)
    threshold_moved(arrays)
    export.save(arrays, folder / contract.SERVING_FILE)
    manifest = json.loads((folder / "manifest.json").read_text())
    data = (folder / contract.SERVING_FILE).read_bytes()
    entry = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    manifest["files"][contract.SERVING_FILE] = entry
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(artifacts.ArtifactError, match="forest does not reproduce"):
        train_steps.verify(quick_settings, staged)
    assert not folder.exists()


def test_an_export_that_needs_unpickling_cannot_be_loaded(tmp_path: Path) -> None:
    path = tmp_path / "serving.npz"
    np.savez(path, allow_pickle=True, classes=np.array(["a", None], dtype=object))
    with pytest.raises(export.ExportError, match="not a readable serving export"):
        export.load(path)
