"""scikit-learn's RandomForestClassifier.predict_proba, reproduced bit for bit without its per-call overhead.

sklearn's Python bookkeeping around 100 tiny tree walks costs far more per call than the walks. Here one
compiled loop (`loops.walk`) walks every row down every tree. It follows sklearn exactly: X is
cast to float32 and compared `<=` to the float64 thresholds, a tree's probability is its leaf's stored class
fractions, and trees are summed in order then divided by their number, so the floats (and so the argmax,
even on exact ties) are the ones sklearn would give, whatever the batch size.

For finite rows only: sklearn sends a NaN down the side each split learned (`missing_go_to_left`), which the
export does not carry, so a row holding NaN or an infinity is refused here rather than answered otherwise.
"""

import numpy as np

from app._loops import walk

# A compiled call holds the GIL: a big batch is walked in slices this long, between which the event loop
# answers others (/health, small requests) instead of waiting for the whole walk.
SLICE_ROWS = 1024


class FlatForest:
    """A fitted forest as read-only arrays (the serving export's): its trees concatenated, node ids global,
    a leaf its own child. Unsigned indices: the compiled loop then skips the check for negative
    (from-the-end) indices, which makes the walk much faster; and checks none at all, so every index is
    checked here, once."""

    def __init__(
        self,
        children: np.ndarray,
        feature: np.ndarray,
        threshold: np.ndarray,
        value: np.ndarray,
        roots: np.ndarray,
        depths: np.ndarray,
        n_features: int,
    ) -> None:
        nodes = len(threshold)
        shapes_ok = (
            children.shape == (nodes, 2)
            and feature.shape == (nodes,)
            and value.ndim == 2
            and len(value) == nodes
            and roots.ndim == 1
            and depths.shape == roots.shape
            and len(roots) > 0
        )
        if not shapes_ok:
            raise ValueError("the forest's arrays do not describe one set of nodes and trees")
        self.n_features = n_features
        self.n_classes = int(value.shape[1])
        self._arrays = (
            _indices(children, nodes, "children"),
            _indices(feature, n_features, "features"),
            np.ascontiguousarray(threshold, dtype=np.float64),
            np.ascontiguousarray(value, dtype=np.float64),
            _indices(roots, nodes, "roots"),
            np.ascontiguousarray(_indices(depths, nodes + 1, "depths"), dtype=np.intp),
        )
        for array in self._arrays:
            array.flags.writeable = False

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Probabilities for a 2-D array of finite preprocessed rows (compared in float32, as sklearn casts
        them); a row with NaN or an infinity raises ValueError."""
        x = np.ascontiguousarray(rows, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"rows must be (n, {self.n_features}), not {x.shape}")
        if len(x) <= SLICE_ROWS:
            return walk(x, *self._arrays)
        slices = range(0, len(x), SLICE_ROWS)
        return np.concatenate([walk(x[i : i + SLICE_ROWS], *self._arrays) for i in slices])


def _indices(array: np.ndarray, bound: int, what: str) -> np.ndarray:
    """An index array as uint64 once every index is in 0..bound-1: a negative one (which the cast would turn
    into a huge one) or one too large would be read out of bounds by the compiled loop."""
    if array.dtype.kind not in "iu" or (array.size and (array.min() < 0 or array.max() >= bound)):
        raise ValueError(f"the forest's {what} point outside 0 to {bound - 1} (or are not integers)")
    return np.ascontiguousarray(array, dtype=np.uint64)
