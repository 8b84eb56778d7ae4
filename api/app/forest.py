"""scikit-learn's RandomForestClassifier.predict_proba, reproduced bit for bit without its per-call overhead.

sklearn spends ~3 ms per call in Python bookkeeping around 100 tiny tree walks. Here a few rows take every
tree at once in a dozen numpy operations (QuickScorer's bitvectors: Lucchese et al., SIGIR 2015), and a big
batch uses each tree's own compiled `apply`. Both follow sklearn exactly: X is cast
to float32 and compared `<=` to the float64 thresholds, a tree's probability is its leaf's stored class
fractions, and trees are summed in order then divided by their number, so the floats (and so the argmax,
even on exact ties) are the ones sklearn would give.
"""

from typing import Any

import numpy as np

# Up to this many rows walk all trees at once; above, per-tree `apply` is faster.
_ALL_TREES_AT_ONCE_MAX_ROWS = 64
_MAX_LEAVES_PER_WORD = 64


def _float32_floor(thresholds: np.ndarray) -> np.ndarray:
    """The largest float32 <= each float64 threshold: for a float32 x, `x <= t64` exactly when `x <= t32`,
    so rows are compared in float32 (no upcast) with sklearn's exact decisions."""
    rounded = thresholds.astype(np.float32)
    too_big = rounded.astype(np.float64) > thresholds
    rounded[too_big] = np.nextafter(rounded[too_big], np.float32(-np.inf))
    return rounded


def _leaf_spans(left: np.ndarray, right: np.ndarray) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Leaves numbered left to right: their node ids in that order, and each node's [first, last) leaves."""
    order, stack = [], [0]
    while stack:  # preorder, left child first: leaves come out left to right
        node = stack.pop()
        order.append(node)
        if left[node] >= 0:
            stack += (right[node], left[node])
    leaves = [node for node in order if left[node] < 0]
    first, last = np.zeros(len(left), dtype=np.int64), np.zeros(len(left), dtype=np.int64)
    first[leaves] = np.arange(len(leaves))
    last[leaves] = first[leaves] + 1
    for node in reversed(order):  # children before parents
        if left[node] >= 0:
            first[node], last[node] = first[left[node]], last[right[node]]
    return leaves, first, last


class FlatForest:
    """A fitted forest as read-only arrays."""

    def __init__(self, forest: Any) -> None:
        trees = [estimator.tree_ for estimator in forest.estimators_]
        if any(tree.n_outputs != 1 for tree in trees):
            raise ValueError("only single-output forests are supported")
        self.n_trees = len(trees)
        self.n_classes = int(trees[0].value.shape[2])
        self._trees = trees
        # Per-tree leaf fractions, contiguous, for the batch path (indexed by sklearn's own node ids).
        self._tree_values = [np.ascontiguousarray(tree.value[:, 0, :]) for tree in trees]
        self.uses_bitvectors = max(tree.n_leaves for tree in trees) <= _MAX_LEAVES_PER_WORD
        if self.uses_bitvectors:
            self._build_bitvectors(trees)
        else:
            self._build_level_walk(trees)

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Probabilities for a 2-D array of preprocessed rows (compared in float32, as sklearn casts them)."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if len(rows) <= _ALL_TREES_AT_ONCE_MAX_ROWS:
            return self._walk_by_bitvectors(rows) if self.uses_bitvectors else self._walk_by_levels(rows)
        return self._apply_trees(rows)

    def _build_bitvectors(self, trees: list[Any]) -> None:
        """Each tree's leaves are the bits of one uint64, left to right. Every split whose row goes right
        rules out the leaves of its left subtree; the exit leaf is the lowest bit not ruled out."""
        features, thresholds, left_leaves, starts, leaf_values, leaf_offsets = [], [], [], [], [], []
        for tree, values in zip(trees, self._tree_values, strict=True):
            leaves, first, last = _leaf_spans(tree.children_left, tree.children_right)
            internal = np.flatnonzero(tree.children_left >= 0)
            left_child = tree.children_left[internal]
            spans = zip(first[left_child].tolist(), last[left_child].tolist(), strict=True)
            starts.append(sum(map(len, features)))
            leaf_offsets.append(sum(map(len, leaf_values)) - 1)  # -1: the bit count below is 1-based
            # One empty entry per tree first, so a tree that is a single leaf still has one.
            features.append(np.concatenate([[0], tree.feature[internal]]))
            thresholds.append(np.concatenate([[np.inf], tree.threshold[internal]]))
            left_leaves.append([0] + [(1 << end) - (1 << start) for start, end in spans])
            leaf_values.append(values[leaves])
        self._feature = np.concatenate(features)
        self._threshold = _float32_floor(np.concatenate(thresholds))
        self._left_leaves = np.array([bits for tree in left_leaves for bits in tree], dtype=np.uint64)
        self._starts = np.array(starts, dtype=np.intp)
        self._leaf_offsets = np.array(leaf_offsets, dtype=np.intp)
        self._value = np.concatenate(leaf_values)
        for array in (self._feature, self._threshold, self._left_leaves, self._starts, self._leaf_offsets):
            array.flags.writeable = False
        self._value.flags.writeable = False

    def _walk_by_bitvectors(self, rows: np.ndarray) -> np.ndarray:
        # Entries down, rows across: the gather copies whole rows of the transposed input (3x faster).
        goes_right = rows.T.take(self._feature, axis=0) > self._threshold[:, None]
        ruled_out = np.bitwise_or.reduceat(self._left_leaves[:, None] * goes_right, self._starts, axis=0)
        # r ^ (r + 1) sets the lowest bit not ruled out and all below it: its bit count is the exit leaf + 1.
        leaves = self._leaf_offsets[:, None] + np.bitwise_count(ruled_out ^ (ruled_out + np.uint64(1)))
        # (trees, rows, classes) summed over trees: numpy adds them one after the other, as sklearn does.
        return self._value.take(leaves, axis=0).sum(axis=0) / self.n_trees

    def _build_level_walk(self, trees: list[Any]) -> None:
        """Trees too big for a word: nodes renumbered breadth-first (a right child is left + 1), and every
        tree walked one level at a time."""
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
        for array in (self._left, self._feature, self._threshold, self._value, self._roots):
            array.flags.writeable = False

    def _walk_by_levels(self, rows: np.ndarray) -> np.ndarray:
        node = np.broadcast_to(self._roots, (len(rows), len(self._roots)))
        for _ in range(self._depth):
            goes_right = np.take_along_axis(rows, self._feature[node], axis=1) > self._threshold[node]
            node = self._left[node] + goes_right
        return self._value[node].sum(axis=1) / self.n_trees

    def _apply_trees(self, rows: np.ndarray) -> np.ndarray:
        total = np.zeros((len(rows), self.n_classes))
        scratch = np.empty_like(total)
        for tree, values in zip(self._trees, self._tree_values, strict=True):
            np.take(values, tree.apply(rows), axis=0, out=scratch)
            total += scratch
        total /= self.n_trees
        return total
