"""The fitted PCA of the chart as plain arithmetic: where a penguin sits among the training points.

Computed as `pca.transform` does (to 1e-9), but summed feature by feature in one fixed order by a function
compiled by numba, where a matrix product's rounding depends on the number of rows: a penguin gets the same
bits whatever else is in its batch, in a microsecond.
"""

from typing import Any

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _project(rows: np.ndarray, axes: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> np.ndarray:
    positions = np.empty((rows.shape[0], axes.shape[1]))
    for i in range(rows.shape[0]):
        for k in range(axes.shape[1]):
            total = 0.0
            for j in range(rows.shape[1]):
                total += rows[i, j] * axes[j, k]
            positions[i, k] = (total - offset[k]) / scale[k]
    return positions


class PcaProjection:
    def __init__(self, pca: Any) -> None:
        self._axes = np.ascontiguousarray(pca.components_.T, dtype=np.float64)
        self._offset = pca.mean_ @ pca.components_.T
        scale = np.sqrt(pca.explained_variance_) if pca.whiten else np.ones(len(self._offset))
        self._scale = np.asarray(scale, dtype=np.float64)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """(n, components) positions of (n, features) preprocessed rows."""
        return _project(np.ascontiguousarray(rows, dtype=np.float64), self._axes, self._offset, self._scale)
