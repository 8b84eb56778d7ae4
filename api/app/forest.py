"""scikit-learn's RandomForestClassifier.predict_proba, reproduced bit for bit without its per-call overhead.

sklearn's Python bookkeeping around 100 tiny tree walks costs far more per call than the walks. Here one
function compiled by numba walks every row down every tree, and a big batch is cut into one slice
per core, walked in parallel threads (the compiled walk releases the GIL). It follows sklearn exactly: X is
cast to float32 and compared `<=` to the float64 thresholds, a tree's probability is its leaf's stored class
fractions, and trees are summed in order then divided by their number, so the floats (and so the argmax,
even on exact ties) are the ones sklearn would give, whatever the batch size.

For finite rows only: sklearn sends a NaN down the side each split learned (`missing_go_to_left`), which the
export does not carry, so a row holding NaN or an infinity is refused here rather than answered otherwise.
"""

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np


def _cgroup_quota() -> tuple[int, int] | None:
    """The container's CPU quota and period (cgroup v2's cpu.max, else v1's cfs files); None: no quota."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except (OSError, ValueError):
        try:
            quota = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text().strip()
            period = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if quota in ("max", "-1") or not quota.isdigit() or not period.isdigit():
        return None
    return int(quota), int(period)


def _usable_cores() -> int:
    """The cores this process may really use: the affinity mask, and a container's CPU quota (docker --cpus,
    Kubernetes limits) which the mask does not show; LOKY_MAX_CPU_COUNT still caps it, as it did when joblib
    counted (serving no longer imports joblib)."""
    cores = len(os.sched_getaffinity(0))
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota[0] / quota[1])))
    cap = os.environ.get("LOKY_MAX_CPU_COUNT", "")
    return max(1, min(cores, int(cap))) if cap.isdigit() else cores


_CORES = _usable_cores()
# From this many rows a batch is walked in parallel slices: below it, handing slices to threads costs more
# than it saves (the measured break-even is in INFORME_IMPLEMENTACION.md).
_PARALLEL_MIN_ROWS = 1024
_POOL = ThreadPoolExecutor(max_workers=_CORES, thread_name_prefix="forest")
NON_FINITE = "a row holds NaN or an infinity (in float32): the forest answers finite rows only"


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
    order. A non-finite value is refused first (checked here, compiled, it costs next to nothing)."""
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            if not np.isfinite(x[i, j]):
                raise ValueError(NON_FINITE)
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
    """A fitted forest as read-only arrays (the serving export's): its trees concatenated, node ids global,
    a leaf its own child. Unsigned indices: numba then skips the check for negative (from-the-end) indices,
    which makes the walk much faster; and checks none at all, so every index is checked here, once."""

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
        if len(x) < _PARALLEL_MIN_ROWS or _CORES == 1:
            return _walk(x, *self._arrays)
        slices = np.array_split(x, _CORES)
        return np.concatenate(list(_POOL.map(lambda part: _walk(part, *self._arrays), slices)))


def _indices(array: np.ndarray, bound: int, what: str) -> np.ndarray:
    """An index array as uint64 once every index is in 0..bound-1: a negative one (which the cast would turn
    into a huge one) or one too large would be read out of bounds by the compiled walk."""
    if array.dtype.kind not in "iu" or (array.size and (array.min() < 0 or array.max() >= bound)):
        raise ValueError(f"the forest's {what} point outside 0 to {bound - 1} (or are not integers)")
    return np.ascontiguousarray(array, dtype=np.uint64)
