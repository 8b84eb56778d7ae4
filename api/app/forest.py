"""scikit-learn's RandomForestClassifier.predict_proba, reproduced bit for bit without its per-call overhead.

sklearn spends ~3 ms per call in Python bookkeeping around 100 tiny tree walks. Here one row walks every tree
at once, level by level, over flat numpy arrays; a batch uses each tree's own compiled `apply`. Both follow
sklearn exactly: X is cast to float32 and compared `<=` to the float64 thresholds, a tree's probability is its
leaf's stored class fractions, and trees are summed in order then divided by their number, so the floats
(and so the argmax, even on exact ties) are the ones sklearn would give.
"""

from typing import Any

import numpy as np

# Below this many rows a batch walks all trees at once like a single row; above, per-tree `apply` is faster.
_LEVEL_WALK_MAX_ROWS = 8


def _float32_floor(thresholds: np.ndarray) -> np.ndarray:
    """The largest float32 <= each float64 threshold: for a float32 x, `x <= t64` exactly when `x <= t32`,
    so the walk compares in float32 (no upcast of the row) with sklearn's exact decisions."""
    rounded = thresholds.astype(np.float32)
    too_big = rounded.astype(np.float64) > thresholds
    rounded[too_big] = np.nextafter(rounded[too_big], np.float32(-np.inf))
    return rounded


class FlatForest:
    """A fitted forest as read-only arrays, nodes renumbered breadth-first so a right child is left + 1."""

    def __init__(self, forest: Any) -> None:
        trees = [estimator.tree_ for estimator in forest.estimators_]
        if any(tree.n_outputs != 1 for tree in trees):
            raise ValueError("only single-output forests are supported")
        self.n_trees = len(trees)
        self.n_classes = int(trees[0].value.shape[2])
        self._trees = trees
        # Per-tree leaf fractions, contiguous, for the batch path (indexed by sklearn's own node ids).
        self._tree_values = [np.ascontiguousarray(tree.value[:, 0, :]) for tree in trees]
        self._depth = max(tree.max_depth for tree in trees)

        offsets = np.cumsum([0] + [tree.node_count for tree in trees])
        old_left = np.concatenate(
            [tree.children_left + off for tree, off in zip(trees, offsets, strict=False)]
        )
        old_right = np.concatenate(
            [tree.children_right + off for tree, off in zip(trees, offsets, strict=False)]
        )
        is_leaf = np.concatenate([tree.children_left < 0 for tree in trees])
        feature = np.concatenate([tree.feature for tree in trees])
        threshold = np.concatenate([tree.threshold for tree in trees])
        value = np.concatenate(self._tree_values)

        # Breadth-first over all trees at once: children are appended in pairs (left, right).
        order = [offsets[:-1]]
        frontier = offsets[:-1]
        while frontier.size:
            internal = frontier[~is_leaf[frontier]]
            frontier = np.column_stack([old_left[internal], old_right[internal]]).ravel()
            order.append(frontier)
        old_ids = np.concatenate(order)
        new_id = np.empty_like(old_ids)
        new_id[old_ids] = np.arange(old_ids.size)

        leaf = is_leaf[old_ids]
        # A leaf points at itself and never goes right (its threshold is +inf), so extra levels are no-ops.
        self._left = np.where(leaf, np.arange(old_ids.size), new_id[np.where(leaf, 0, old_left[old_ids])])
        self._feature = np.where(leaf, 0, feature[old_ids])
        self._threshold = _float32_floor(np.where(leaf, np.inf, threshold[old_ids]))
        self._value = value[old_ids]
        self._roots = new_id[offsets[:-1]]
        # Small forests: one comparison over all nodes is cheaper than a gather and a compare per level.
        self._decide_all_nodes = old_ids.size <= 1000 * max(self._depth, 1)
        for array in (self._left, self._feature, self._threshold, self._value, self._roots):
            array.flags.writeable = False

    def predict_proba_one(self, row: np.ndarray) -> np.ndarray:
        """Probabilities for one preprocessed row (float32, as sklearn casts it)."""
        node = self._roots
        if self._decide_all_nodes:
            goes_right = row[self._feature] > self._threshold
            for _ in range(self._depth):
                node = self._left[node] + goes_right[node]
        else:
            for _ in range(self._depth):
                node = self._left[node] + (row[self._feature[node]] > self._threshold[node])
        return self._value[node].sum(axis=0) / self.n_trees

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Probabilities for a 2-D float32 array of preprocessed rows."""
        if len(rows) <= _LEVEL_WALK_MAX_ROWS:
            return np.array([self.predict_proba_one(row) for row in rows]).reshape(len(rows), self.n_classes)
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        total = np.zeros((len(rows), self.n_classes))
        scratch = np.empty_like(total)
        for tree, values in zip(self._trees, self._tree_values, strict=True):
            np.take(values, tree.apply(rows), axis=0, out=scratch)
            total += scratch
        total /= self.n_trees
        return total
