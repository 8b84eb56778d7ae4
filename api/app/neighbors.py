"""The nearest training penguins of a query, over the whole training split, in the model's feature space.

Built once per model version, where the original refit NearestNeighbors on every request. A split of up to a
few thousand rows is scanned whole by a function compiled by numba; a bigger one gets a KD-tree, whose
per-call overhead would dominate on a small split (INFORME_IMPLEMENTACION.md has the timings).
"""

from typing import Any

import numba
import numpy as np

_SCAN_MAX_POINTS = 4096


@numba.njit(cache=True, nogil=True)
def _scan(rows: np.ndarray, points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest points of each row, nearest first (on equal distances, the lower row number first)."""
    distances = np.full((rows.shape[0], k), np.inf)
    nearest = np.full((rows.shape[0], k), -1, dtype=np.intp)
    for i in range(rows.shape[0]):
        for j in range(points.shape[0]):
            squared = 0.0
            for d in range(points.shape[1]):
                squared += (rows[i, d] - points[j, d]) ** 2
            if squared < distances[i, k - 1]:  # insert it in order, dropping the k-th
                slot = k - 1
                while slot > 0 and squared < distances[i, slot - 1]:
                    distances[i, slot], nearest[i, slot] = distances[i, slot - 1], nearest[i, slot - 1]
                    slot -= 1
                distances[i, slot], nearest[i, slot] = squared, j
    return np.sqrt(distances), nearest


class NeighborIndex:
    def __init__(self, points: np.ndarray, k: int) -> None:
        self._k = min(k, len(points))
        self._points = np.ascontiguousarray(points, dtype=np.float64)
        self._tree: Any = None
        if len(points) > _SCAN_MAX_POINTS:
            # Imported here: scipy costs start-up time and memory that a small split never needs.
            from scipy.spatial import cKDTree

            self._tree = cKDTree(points)

    def query(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, k) distances and row numbers of the k nearest points of each row, nearest first."""
        if self._tree is None:
            return _scan(np.ascontiguousarray(rows, dtype=np.float64), self._points, self._k)
        # k as a list: the answer keeps its k axis even for k=1.
        distances, nearest = self._tree.query(rows, k=list(range(1, self._k + 1)))
        return np.asarray(distances), np.asarray(nearest)
