"""scikit-learn's RandomForestClassifier.predict_proba, reproduced bit for bit without its per-call overhead.

sklearn spends ~3 ms per call in Python bookkeeping around 100 tiny tree walks. Here a few rows walk all
trees in one function compiled by numba (microseconds), and a big batch uses each tree's own compiled
`apply`. Both follow sklearn exactly: X is cast to float32 and compared `<=` to the float64 thresholds, a
tree's probability is its leaf's stored class fractions, and trees are summed in order then divided by their
number, so the floats (and so the argmax, even on exact ties) are the ones sklearn would give.
"""

from typing import Any

import numba
import numpy as np

# Up to this many rows the compiled walk is faster; above, sklearn's per-tree `apply` is.
_WALK_MAX_ROWS = 64


@numba.njit(cache=True, nogil=True)
def _walk(
    rows: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    value: np.ndarray,
    roots: np.ndarray,
) -> np.ndarray:
    """Every row down every tree (trees concatenated, a leaf's left child is -1), summed in tree order."""
    x = rows.astype(np.float32)
    total = np.zeros((x.shape[0], value.shape[1]))
    for i in range(x.shape[0]):
        for root in roots:
            node = root
            while left[node] >= 0:
                node = left[node] if x[i, feature[node]] <= threshold[node] else right[node]
            total[i] += value[node]
    return total / len(roots)


class FlatForest:
    """A fitted forest as read-only arrays."""

    def __init__(self, forest: Any) -> None:
        trees = [estimator.tree_ for estimator in forest.estimators_]
        if any(tree.n_outputs != 1 for tree in trees):
            raise ValueError("only single-output forests are supported")
        self.n_trees = len(trees)
        self.n_classes = int(trees[0].value.shape[2])
        self._trees = trees
        # Per-tree leaf fractions, contiguous, for `apply` (indexed by sklearn's own node ids).
        self._tree_values = [np.ascontiguousarray(tree.value[:, 0, :]) for tree in trees]

        offsets = np.cumsum([0] + [tree.node_count for tree in trees])[:-1]
        # Node ids made global across the concatenated trees; a leaf's children are -1.
        left, right = [], []
        for tree, offset in zip(trees, offsets, strict=True):
            leaf = tree.children_left < 0
            left.append(np.where(leaf, -1, tree.children_left + offset))
            right.append(np.where(leaf, -1, tree.children_right + offset))
        self._left, self._right = np.concatenate(left), np.concatenate(right)
        self._feature = np.concatenate([tree.feature for tree in trees]).astype(np.intp)
        self._threshold = np.concatenate([tree.threshold for tree in trees])
        self._value = np.concatenate(self._tree_values)
        self._roots = offsets.astype(np.intp)
        for array in (self._left, self._right, self._feature, self._threshold, self._value, self._roots):
            array.flags.writeable = False

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Probabilities for a 2-D array of preprocessed rows (compared in float32, as sklearn casts them)."""
        if len(rows) <= _WALK_MAX_ROWS:
            return _walk(
                np.ascontiguousarray(rows, dtype=np.float64),
                self._left,
                self._right,
                self._feature,
                self._threshold,
                self._value,
                self._roots,
            )
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        total = np.zeros((len(rows), self.n_classes))
        scratch = np.empty_like(total)
        for tree, values in zip(self._trees, self._tree_values, strict=True):
            np.take(values, tree.apply(rows), axis=0, out=scratch)
            total += scratch
        total /= self.n_trees
        return total
