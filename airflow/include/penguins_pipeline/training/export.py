"""The serving export (`serving.npz`): every array the API answers from, built from the fitted scikit-learn
objects here, on the training side, so the API never unpickles and never imports scikit-learn.

The export carries scikit-learn's own outputs on reference rows (training rows and random in-bounds rows).
`check_export` proves, when training and again when the staged files are reloaded, that the arrays reproduce
those outputs with plain numpy (bit for bit for the preprocessing and the probabilities), and that the
outputs are the model's; the API then proves its compiled fast path on the same rows before serving it. Two
independent evaluations of the arrays, on purpose: the pipeline image has no numba, and serving must not
import training code.
"""

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import penguins_contract as contract
from penguins_pipeline.core.errors import PermanentError
from penguins_pipeline.core.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES

if TYPE_CHECKING:
    import pandas as pd

    from penguins_pipeline.training.model import TrainedModel

# Reference rows: the first training rows, then random rows anywhere inside the physical bounds.
REFERENCE_SPLIT_ROWS = 256
REFERENCE_RANDOM_ROWS = 64


class ExportError(PermanentError, ValueError):
    """The serving export does not reproduce the model: the version must not be promoted."""


Arrays = dict[str, np.ndarray]


def category_positions(frame: "pd.DataFrame", categories: dict[str, list[str]]) -> np.ndarray:
    """(n, categorical) positions of a frame's category names among the encoder's categories."""
    columns = []
    for field in CATEGORICAL_FEATURES:
        index = {name: i for i, name in enumerate(categories[field])}
        names = frame[field].astype(str).tolist()
        unknown = sorted({name for name in names if name not in index})
        if unknown:
            raise ExportError(f"{field} values {unknown} are not among the encoder's categories")
        columns.append(np.array([index[name] for name in names], dtype=np.intp))
    return np.column_stack(columns)


def forest_arrays(forest: object) -> Arrays:
    """The trees concatenated, node ids made global; a leaf is its own child (feature 0, never read).
    Each split's `missing_go_to_left` is left out: serving refuses non-finite rows (api/app/forest.py)."""
    trees = [estimator.tree_ for estimator in forest.estimators_]  # type: ignore[attr-defined]
    if any(tree.n_outputs != 1 for tree in trees):
        raise ExportError("only single-output forests can be exported")
    offsets = np.cumsum([0] + [tree.node_count for tree in trees])[:-1]
    children, features = [], []
    for tree, offset in zip(trees, offsets, strict=True):
        leaf = tree.children_left < 0
        ids = np.arange(tree.node_count)
        pairs = np.column_stack(
            [np.where(leaf, ids, tree.children_left), np.where(leaf, ids, tree.children_right)]
        )
        children.append(pairs + offset)
        features.append(np.where(leaf, 0, tree.feature))
    return {
        "forest_children": np.concatenate(children).astype(np.uint64),
        "forest_feature": np.concatenate(features).astype(np.uint64),
        "forest_threshold": np.concatenate([tree.threshold for tree in trees]).astype(np.float64),
        "forest_value": np.concatenate([tree.value[:, 0, :] for tree in trees]).astype(np.float64),
        "forest_roots": offsets.astype(np.uint64),
        "forest_depths": np.array([tree.max_depth for tree in trees], dtype=np.int64),
    }


def _sklearn_outputs(model: "TrainedModel", measures: np.ndarray, categories: np.ndarray) -> Arrays:
    """What the fitted objects answer on these rows (the reference the arrays must reproduce)."""
    import pandas as pd

    encoder = model.preprocessor.named_transformers_["categorical"]
    frame = pd.DataFrame(measures, columns=NUMERIC_FEATURES)
    for i, (field, names) in enumerate(zip(CATEGORICAL_FEATURES, encoder.categories_, strict=True)):
        frame[field] = np.asarray(names, dtype=str)[categories[:, i]]
    rows = np.asarray(model.preprocessor.transform(frame), dtype=np.float64)
    return {
        "reference_rows": rows,
        "reference_proba": model.model.predict_proba(rows),
        "reference_pca": model.pca.transform(rows),
    }


def serving_arrays(
    model: "TrainedModel",
    features: "pd.DataFrame",
    labels: np.ndarray,
    viz_rows: np.ndarray,
    viz_pca: np.ndarray,
    random_state: int,
) -> Arrays:
    """The export of a fitted model, its training split `features`/`labels` and the chart's sample (rows
    `viz_rows` of the split, at PCA positions `viz_pca`), checked before it is returned. Every array is a
    copy: nothing done to the export reaches the fitted objects."""
    scaler = model.preprocessor.named_transformers_["numeric"]
    encoder = model.preprocessor.named_transformers_["categorical"]
    categories = {
        field: [str(c) for c in cats]
        for field, cats in zip(CATEGORICAL_FEATURES, encoder.categories_, strict=True)
    }
    count = len(NUMERIC_FEATURES)
    pca = model.pca
    measures = features[NUMERIC_FEATURES].to_numpy(dtype=np.float64)
    split_categories = category_positions(features, categories)
    rng = np.random.default_rng(random_state)
    random_measures = np.column_stack(
        [rng.uniform(*contract.PHYSICAL_BOUNDS[name], REFERENCE_RANDOM_ROWS) for name in NUMERIC_FEATURES]
    )
    random_categories = np.column_stack(
        [rng.integers(0, len(categories[f]), REFERENCE_RANDOM_ROWS) for f in CATEGORICAL_FEATURES]
    ).astype(np.intp)
    reference_measures = np.vstack([measures[:REFERENCE_SPLIT_ROWS], random_measures])
    reference_categories = np.vstack([split_categories[:REFERENCE_SPLIT_ROWS], random_categories])
    arrays: Arrays = {
        "classes": np.array([str(c) for c in model.label_encoder.classes_], dtype=str),
        "scaler_mean": np.array(scaler.mean_ if scaler.with_mean else np.zeros(count), dtype=np.float64),
        "scaler_scale": np.array(scaler.scale_ if scaler.with_std else np.ones(count), dtype=np.float64),
        **{contract.categories_key(f): np.array(categories[f], dtype=str) for f in CATEGORICAL_FEATURES},
        "columns": np.array(expected_columns(categories), dtype=str),
        **forest_arrays(model.model),
        "pca_components": np.array(pca.components_, dtype=np.float64),
        "pca_mean": np.array(pca.mean_, dtype=np.float64),
        "pca_scale": np.array(
            np.sqrt(pca.explained_variance_) if pca.whiten else np.ones(pca.n_components_), dtype=np.float64
        ),
        "split_measures": measures,
        "split_categories": split_categories.astype(np.int64),
        "split_labels": np.array(labels, dtype=np.int64),
        "viz_measures": measures[viz_rows],
        "viz_categories": split_categories[viz_rows].astype(np.int64),
        "viz_labels": np.array(labels, dtype=np.int64)[viz_rows],
        "viz_pca": np.array(viz_pca, dtype=np.float64),
        "reference_measures": reference_measures,
        "reference_categories": reference_categories.astype(np.int64),
        **_sklearn_outputs(model, reference_measures, reference_categories),
    }
    check_export(arrays, model)
    return arrays


def expected_columns(categories: dict[str, list[str]]) -> list[str]:
    """The preprocessor's output columns: the measures, then `field=category` per one-hot column."""
    return [*NUMERIC_FEATURES, *(f"{f}={c}" for f in CATEGORICAL_FEATURES for c in categories[f])]


# --- the numpy oracle: what the arrays answer, written plainly ---


def _encode(arrays: Arrays, measures: np.ndarray, categories: np.ndarray) -> np.ndarray:
    blocks = [
        np.eye(len(arrays[contract.categories_key(field)]))[categories[:, i]]
        for i, field in enumerate(CATEGORICAL_FEATURES)
    ]
    return np.concatenate([(measures - arrays["scaler_mean"]) / arrays["scaler_scale"], *blocks], axis=1)


def _walk(arrays: Arrays, rows: np.ndarray) -> np.ndarray:
    """Rows (as float32, like scikit-learn) down every tree at once; leaves summed in tree order."""
    x = rows.astype(np.float32)
    children, feature = arrays["forest_children"].astype(np.intp), arrays["forest_feature"].astype(np.intp)
    threshold = arrays["forest_threshold"]
    node = np.tile(arrays["forest_roots"].astype(np.intp), (len(x), 1))
    line = np.arange(len(x))[:, None]
    for _ in range(int(arrays["forest_depths"].max(initial=0))):
        right = ~(x[line, feature[node]] <= threshold[node])
        node = children[node, right.astype(np.intp)]
    total = np.zeros((len(x), arrays["forest_value"].shape[1]))
    for tree in range(node.shape[1]):
        total += arrays["forest_value"][node[:, tree]]
    result: np.ndarray = total / node.shape[1]
    return result


def _project(arrays: Arrays, rows: np.ndarray) -> np.ndarray:
    components = arrays["pca_components"]
    result: np.ndarray = (rows - arrays["pca_mean"]) @ components.T / arrays["pca_scale"]
    return result


def check_export(arrays: Arrays, model: "TrainedModel") -> None:
    """Every array is there, numeric or unicode; the reference outputs are the model's; the arrays reproduce
    them. Raises ExportError naming what differs."""
    missing = [name for name in contract.SERVING_ARRAYS if name not in arrays]
    if missing:
        raise ExportError(f"the serving export lacks {missing}")
    odd = [name for name, a in arrays.items() if a.dtype.kind not in "biufU"]
    if odd:
        raise ExportError(f"the serving export has arrays that are not numbers or text: {odd}")
    sklearn = _sklearn_outputs(model, arrays["reference_measures"], arrays["reference_categories"])
    exact = [name for name in sklearn if name != "reference_pca"]
    if not all(np.array_equal(arrays[name], sklearn[name]) for name in exact):
        raise ExportError("the serving export's reference outputs are not the model's")
    if not np.allclose(
        arrays["reference_pca"], sklearn["reference_pca"], rtol=0, atol=contract.PCA_TOLERANCE
    ):
        raise ExportError("the serving export's reference PCA positions are not the model's")
    rows = _encode(arrays, arrays["reference_measures"], arrays["reference_categories"])
    if not np.array_equal(rows, arrays["reference_rows"]):
        raise ExportError("the exported scaler and categories do not reproduce the preprocessor's output")
    if not np.array_equal(_walk(arrays, rows), arrays["reference_proba"]):
        raise ExportError("the exported forest does not reproduce the model's probabilities bit for bit")
    if not np.allclose(_project(arrays, rows), arrays["reference_pca"], rtol=0, atol=contract.PCA_TOLERANCE):
        raise ExportError("the exported PCA does not reproduce its projection")


def save(arrays: Arrays, path: Path) -> None:
    """Uncompressed (the API loads it at start-up), fsynced; written through a buffer so nothing but
    plain arrays can reach the file."""
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    with open(path, "wb") as handle:
        handle.write(buffer.getbuffer())
        handle.flush()
        os.fsync(handle.fileno())


def load(path: Path) -> Arrays:
    """The arrays of an export file, refusing pickled content."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as err:
        raise ExportError(f"{path}: not a readable serving export: {err}") from err
