"""The nearest training penguins of a query, over the whole training split, in the model's feature space.

Built once per model version, where the original refit NearestNeighbors on every request. A split of up to a
few thousand rows is scanned whole by a compiled loop (`loops.scan`); a bigger one gets a KD-tree, whose
per-call overhead would dominate on a small split (INFORME_IMPLEMENTACION.md has the timings).
"""

from typing import Any

import numpy as np

from app._loops import scan

_SCAN_MAX_POINTS = 4096


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
            return scan(np.ascontiguousarray(rows, dtype=np.float64), self._points, self._k)
        # k as a list: the answer keeps its k axis even for k=1.
        distances, nearest = self._tree.query(rows, k=list(range(1, self._k + 1)))
        return np.asarray(distances), np.asarray(nearest)
