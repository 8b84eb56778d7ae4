"""scikit-learn's RandomForestClassifier.predict_proba, reproduced bit for bit without its per-call overhead.

sklearn's Python bookkeeping around 100 tiny tree walks costs far more per call than the walks. Here one
function compiled by numba walks every row down every tree, and a big batch is cut into one slice
per core, walked in parallel threads (the compiled walk releases the GIL). It follows sklearn exactly: X is
cast to float32 and compared `<=` to the float64 thresholds, a tree's probability is its leaf's stored class
fractions, and trees are summed in order then divided by their number, so the floats (and so the argmax,
even on exact ties) are the ones sklearn would give, whatever the batch size.
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
    """A fitted forest as read-only arrays (the serving export's): its trees concatenated, node ids global,
    a leaf its own child. Unsigned indices: numba then skips the check for negative (from-the-end) indices,
    which halves the time of the walk."""

    def __init__(
        self,
        children: np.ndarray,
        feature: np.ndarray,
        threshold: np.ndarray,
        value: np.ndarray,
        roots: np.ndarray,
        depths: np.ndarray,
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
        if nodes and (children.max() >= nodes or roots.max() >= nodes or depths.min() < 0):
            raise ValueError("the forest's arrays point outside its nodes")
        self.n_classes = int(value.shape[1])
        self._arrays = (
            np.ascontiguousarray(children, dtype=np.uint64),
            np.ascontiguousarray(feature, dtype=np.uint64),
            np.ascontiguousarray(threshold, dtype=np.float64),
            np.ascontiguousarray(value, dtype=np.float64),
            np.ascontiguousarray(roots, dtype=np.uint64),
            np.ascontiguousarray(depths, dtype=np.intp),
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
