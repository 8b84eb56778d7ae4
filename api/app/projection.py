"""The fitted PCA of the chart as plain arithmetic: where a penguin sits among the training points.

Computed as `pca.transform` does (to 1e-9), but summed feature by feature in one fixed order by a compiled
loop (`loops.project`), where a matrix product's rounding depends on the number of rows: a penguin gets the
same bits whatever else is in its batch, in a microsecond.
"""

import numpy as np

from app._loops import project


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
        return project(np.ascontiguousarray(rows, dtype=np.float64), self._axes, self._offset, self._scale)
