"""The fitted PCA of the chart as plain arithmetic: where a penguin sits among the training points.

Computed as `pca.transform` does (to 1e-9), but summed feature by feature in one fixed order by a function
compiled by numba, where a matrix product's rounding depends on the number of rows: a penguin gets the same
bits whatever else is in its batch, in a microsecond.
"""

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
    """From the serving export's components (components, features), mean (features) and scale (components:
    the whitening, or ones)."""

    def __init__(self, components: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> None:
        if components.ndim != 2 or mean.shape != components.shape[1:] or scale.shape != components.shape[:1]:
            raise ValueError("the PCA's components, mean and scale do not fit together")
        self._axes = np.ascontiguousarray(components.T, dtype=np.float64)
        self._offset = mean @ components.T
        self._scale = np.asarray(scale, dtype=np.float64)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """(n, components) positions of (n, features) preprocessed rows."""
        return _project(np.ascontiguousarray(rows, dtype=np.float64), self._axes, self._offset, self._scale)
