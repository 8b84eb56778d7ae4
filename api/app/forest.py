"""scikit-learn's RandomForestClassifier.predict_proba, reproduced bit for bit without its per-call overhead.

sklearn's Python bookkeeping around 100 tiny tree walks costs far more per call than the walks. Here one
function compiled by numba walks every row down every tree, and a big batch is cut into one slice
per core, walked in parallel threads (the compiled walk releases the GIL). It follows sklearn exactly: X is
cast to float32 and compared `<=` to the float64 thresholds, a tree's probability is its leaf's stored class
fractions, and trees are summed in order then divided by their number, so the floats (and so the argmax,
even on exact ties) are the ones sklearn would give, whatever the batch size.
"""

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import joblib
import numba
import numpy as np

# The cores this process may really use: joblib counts the affinity mask and a container's CPU quota
# (docker --cpus, Kubernetes limits), which the affinity mask alone does not show.
_CORES = joblib.cpu_count()
# From this many rows a batch is walked in parallel slices: below it, handing slices to threads costs more
# than it saves (the measured break-even is in INFORME_IMPLEMENTACION.md).
_PARALLEL_MIN_ROWS = 1024
_POOL = ThreadPoolExecutor(max_workers=_CORES, thread_name_prefix="forest")


@numba.njit(cache=True, nogil=True)
def _walk(
    x: np.ndarray,
    children: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    value: np.ndarray,
    roots: np.ndarray,
    depths: np.ndarray,
) -> np.ndarray:
    """Every float32 row down every tree, all rows one level at a time: a leaf is its own child, so a row
    that reached its leaf stays there, and the loop has no branch to mispredict. Leaves summed in tree
    order."""
    total = np.zeros((x.shape[0], value.shape[1]))
    node = np.empty(x.shape[0], dtype=np.uint64)
    for tree in range(roots.shape[0]):
        node[:] = roots[tree]
        for _ in range(depths[tree]):
            for i in range(x.shape[0]):
                j = node[i]
                node[i] = children[j, np.uint64(not x[i, feature[j]] <= threshold[j])]  # 0 left, 1 right
        for i in range(x.shape[0]):
            for k in range(value.shape[1]):
                total[i, k] += value[node[i], k]
    mean: np.ndarray = total / roots.shape[0]  # numpy types this quotient as Any
    return mean


class FlatForest:
    """A fitted forest as read-only arrays: its trees concatenated, node ids made global."""

    def __init__(self, forest: Any) -> None:
        trees = [estimator.tree_ for estimator in forest.estimators_]
        if any(tree.n_outputs != 1 for tree in trees):
            raise ValueError("only single-output forests are supported")
        self.n_classes = int(trees[0].value.shape[2])
        offsets = np.cumsum([0] + [tree.node_count for tree in trees])[:-1]
        children, features = [], []
        for tree, offset in zip(trees, offsets, strict=True):
            leaf = tree.children_left < 0
            ids = np.arange(tree.node_count)
            pairs = np.column_stack(
                [np.where(leaf, ids, tree.children_left), np.where(leaf, ids, tree.children_right)]
            )
            children.append(pairs + offset)
            features.append(np.where(leaf, 0, tree.feature))  # a leaf's feature (-2) is never used
        # Unsigned indices: numba then skips the check for negative (from-the-end) indices, which halves the
        # time of the walk.
        self._arrays = (
            np.concatenate(children).astype(np.uint64),
            np.concatenate(features).astype(np.uint64),
            np.concatenate([tree.threshold for tree in trees]),
            np.concatenate([tree.value[:, 0, :] for tree in trees]),
            offsets.astype(np.uint64),
            np.array([tree.max_depth for tree in trees], dtype=np.intp),
        )
        for array in self._arrays:
            array.flags.writeable = False

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Probabilities for a 2-D array of preprocessed rows (compared in float32, as sklearn casts them)."""
        x = np.ascontiguousarray(rows, dtype=np.float32)
        if len(x) < _PARALLEL_MIN_ROWS or _CORES == 1:
            return _walk(x, *self._arrays)
        slices = np.array_split(x, _CORES)
        return np.concatenate(list(_POOL.map(lambda part: _walk(part, *self._arrays), slices)))
