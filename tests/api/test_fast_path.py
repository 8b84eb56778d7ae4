"""The fast path, built from the serving export alone, answers exactly what the plain scikit-learn pipeline
loaded from the joblib files answers."""

import gc
import os
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist
from sklearn.ensemble import RandomForestClassifier

import app
from app.core.config import Settings
from app.encoding import UnknownCategoryError
from app.forest import FlatForest
from app.loader import load_version
from app.neighbors import NeighborIndex
from app.predictor import Predictor
from app.schemas import PenguinFeatures
from penguins_contract import CATEGORICAL_FEATURES, NUMERIC_FEATURES, PHYSICAL_BOUNDS
from penguins_pipeline.training.export import forest_arrays

FEATURES = [*NUMERIC_FEATURES, *CATEGORICAL_FEATURES]


@pytest.fixture(scope="module")
def version_folder(versions) -> Path:
    return versions.folder / "models" / versions.main


@pytest.fixture(scope="module")
def predictor(versions) -> Predictor:
    return Predictor(load_version(versions.folder, versions.main), Settings().api_near_tie_margin)


@pytest.fixture(scope="module")
def sklearn_objects(version_folder: Path) -> dict:
    return {name: joblib.load(version_folder / f"{name}.joblib") for name in ("preprocessor", "model", "pca")}


def random_penguins(count: int, seed: int) -> pd.DataFrame:
    """Valid inputs over the whole accepted range, most far from any real penguin."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.uniform(*PHYSICAL_BOUNDS[name], count) for name in NUMERIC_FEATURES})
    frame["island"] = rng.choice(["Biscoe", "Dream", "Torgersen"], count)
    frame["sex"] = rng.choice(["female", "male"], count)
    return frame[FEATURES]


@pytest.fixture(scope="module", params=["dataset", "random"])
def penguins(request: pytest.FixtureRequest, clean_penguins: pd.DataFrame) -> pd.DataFrame:
    return clean_penguins[FEATURES] if request.param == "dataset" else random_penguins(1000, seed=20261127)


def as_inputs(frame: pd.DataFrame) -> list[PenguinFeatures]:
    return [PenguinFeatures(**row) for row in frame.to_dict("records")]


def test_one_by_one_and_in_batch_equal_sklearn(
    predictor: Predictor, sklearn_objects: dict, penguins: pd.DataFrame
) -> None:
    encoded = sklearn_objects["preprocessor"].transform(penguins)
    expected = sklearn_objects["model"].predict_proba(encoded)
    expected_species = np.array(predictor.classes)[sklearn_objects["model"].predict(encoded)]
    inputs = as_inputs(penguins)
    answers = {
        "one by one": [predictor.predict(penguin) for penguin in inputs],
        "batch": predictor.predict_batch(inputs, include_neighbors=False),
    }
    for path, answered in answers.items():
        probabilities = np.array([[a["probabilities"][c] for c in predictor.classes] for a in answered])
        np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-6, err_msg=path)
        # Stronger than the rule: the same floats, so ties are broken the same way.
        assert np.array_equal(probabilities, expected), path
        assert [a["species"] for a in answered] == expected_species.tolist(), path
        pca = np.array([[a["pca"]["x"], a["pca"]["y"]] for a in answered])
        np.testing.assert_allclose(pca, sklearn_objects["pca"].transform(encoded), rtol=0, atol=1e-9)


def test_neighbors_are_the_nearest_of_the_whole_training_split(
    predictor: Predictor, sklearn_objects: dict, version_folder: Path, clean_penguins: pd.DataFrame
) -> None:
    split = joblib.load(version_folder / "training_split.joblib")
    train = sklearn_objects["preprocessor"].transform(split["features_raw"])
    queries = pd.concat([clean_penguins[FEATURES].head(50), random_penguins(50, seed=1)], ignore_index=True)
    distances = cdist(sklearn_objects["preprocessor"].transform(queries), train)
    for query, row in zip(as_inputs(queries), distances, strict=True):
        neighbors = predictor.predict(query)["neighbors"]
        np.testing.assert_allclose([n["distance"] for n in neighbors], np.sort(row)[:5], rtol=0, atol=1e-9)
        for neighbor in neighbors:
            position = int(np.argmin(np.abs(row - neighbor["distance"])))
            assert neighbor["species"] == predictor.classes[split["labels_encoded"][position]]


@pytest.mark.parametrize("size", [3, 266, 4096, 5000])  # a scan up to 4,096 points, a KD-tree above
def test_the_neighbour_index_finds_the_true_nearest_at_any_size(size: int) -> None:
    rng = np.random.default_rng(size)
    points = rng.normal(size=(size, 9))
    points[-1] = points[0]  # an exact tie: the lower row number comes first
    queries = np.vstack([points[:3], rng.normal(size=(20, 9))])
    distances, nearest = NeighborIndex(points, 5).query(queries)
    truth = cdist(queries, points)
    k = min(5, size)
    assert distances.shape == nearest.shape == (len(queries), k)
    np.testing.assert_allclose(distances, np.sort(truth, axis=1)[:, :k], rtol=0, atol=1e-12)
    found = truth[np.arange(len(queries))[:, None], nearest]
    np.testing.assert_allclose(found, distances, rtol=0, atol=1e-12)
    assert distances[0, 0] == 0
    assert nearest[0, 0] == 0 if size <= 4096 else nearest[0, 0] in {0, size - 1}


@pytest.mark.parametrize("rows", [1, 1023, 1024, 5001])  # one compiled walk, then slices in parallel threads
def test_the_flat_forest_equals_sklearn_at_any_batch_size(rows: int) -> None:
    """On a forest of deep, uneven trees (noisy labels), not only the default model's small ones."""
    rng = np.random.default_rng(rows)
    x = rng.normal(size=(3000, 6))
    y = (x[:, 0] + rng.normal(scale=1.5, size=3000) > 0).astype(int) + (x[:, 1] > 1)
    forest = RandomForestClassifier(n_estimators=25, random_state=0).fit(x, y)
    assert max(e.tree_.max_depth for e in forest.estimators_) > 15
    queries = rng.normal(scale=2, size=(rows, 6))
    flat = FlatForest(
        **{name.removeprefix("forest_"): a for name, a in forest_arrays(forest).items()}, n_features=6
    )
    assert np.array_equal(flat.predict_proba(queries), forest.predict_proba(queries))


@pytest.fixture(scope="module")
def fitted_forest() -> RandomForestClassifier:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4))
    return RandomForestClassifier(n_estimators=10, random_state=0).fit(x, (x[:, 0] > 0).astype(int))


def flat_arrays(forest: RandomForestClassifier) -> dict[str, np.ndarray]:
    return {name.removeprefix("forest_"): a for name, a in forest_arrays(forest).items()}


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e39])  # 1e39: an infinity once in float32
def test_the_flat_forest_refuses_a_non_finite_row(fitted_forest, value: float) -> None:
    """scikit-learn sends NaN down each split's learned side (missing_go_to_left), which the export does not
    carry: the forest refuses such a row rather than answer something else than scikit-learn would."""
    flat = FlatForest(**flat_arrays(fitted_forest), n_features=4)
    rows = np.zeros((3, 4))
    assert np.array_equal(flat.predict_proba(rows), fitted_forest.predict_proba(rows))
    rows[1, 2] = value
    with pytest.raises(ValueError, match="NaN or an infinity"):
        flat.predict_proba(rows)
    big = np.zeros((2048, 4))  # walked in parallel slices
    big[-1, 0] = value
    with pytest.raises(ValueError, match="NaN or an infinity"):
        flat.predict_proba(big)


def _out_of_range(name: str, value: int):
    def change(arrays: dict[str, np.ndarray]) -> None:
        changed = arrays[name].astype(np.int64)
        changed.flat[-1] = value
        arrays[name] = changed

    return change


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("children", -1),
        ("children", -(2**40)),
        ("feature", -1),
        ("roots", -1),
        ("depths", -1),
        ("children", 10**9),
        ("feature", 4),
        ("roots", 10**9),
    ],
)
def test_the_flat_forest_refuses_an_index_out_of_range(fitted_forest, name: str, value: int) -> None:
    """Negative indices too: cast to unsigned they would be huge ones, read out of bounds by the walk."""
    arrays = flat_arrays(fitted_forest)
    FlatForest(**arrays, n_features=4)
    _out_of_range(name, value)(arrays)
    with pytest.raises(ValueError, match="point outside"):
        FlatForest(**arrays, n_features=4)


def test_a_cpu_limit_keeps_a_big_batch_on_one_thread() -> None:
    """A process allowed one core (a container quota; here LOKY_MAX_CPU_COUNT, which the count honours) is
    not cut into slices for threads it cannot run at once."""
    script = (
        "import threading, numpy as np; from app.forest import FlatForest; "
        "x = np.random.default_rng(0).normal(size=(6000, 3)); "
        "z = np.zeros(1, dtype=int); FlatForest(np.array([[0, 0]]), z, np.zeros(1), np.ones((1, 2)), z, z, 3)"
        ".predict_proba(x); "
        "print(sum(t.name.startswith('forest') for t in threading.enumerate()))"
    )
    api_dir = Path(app.__file__).parents[1]
    path = os.pathsep.join([str(api_dir), str(api_dir.parent / "contract")])
    limited = {**os.environ, "PYTHONPATH": path, "LOKY_MAX_CPU_COUNT": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=limited, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0"]


def test_a_batch_pauses_the_garbage_collector_and_leaves_it_as_it_found_it(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paused while a batch builds its answers, and only then: also when the batch fails, and a collector
    the host program paused stays paused."""
    good = as_inputs(random_penguins(20, seed=3))
    bad = [*good, good[0].model_copy(update={"island": "Atlantis"})]
    project, seen = predictor._project, []
    monkeypatch.setattr(predictor, "_project", lambda rows: seen.append(gc.isenabled()) or project(rows))
    predictor.predict_batch(good, include_neighbors=False)
    assert seen == [False]
    assert gc.isenabled()
    with pytest.raises(UnknownCategoryError):
        predictor.predict_batch(bad, include_neighbors=False)
    assert gc.isenabled()
    gc.disable()
    try:
        predictor.predict_batch(good, include_neighbors=False)
        assert not gc.isenabled()
    finally:
        gc.enable()
