"""Serving's three hot loops, compiled ahead of time into the extension module `app._loops`.

Written in numba's subset of Python and compiled once, by `python -m app.loops` (`make install`, and the API
image's build stage), with numba's `pycc` and a C compiler. The API then imports the compiled module, which
needs numpy only: no numba, no LLVM, no compiling at start. That is what lets it start fast and fit the
course's small containers (INFORME_IMPLEMENTACION.md, "Cold start and memory", has what numba's JIT cost). The
price: a compiled call holds the GIL (numba's `nogil` is for its JIT), so a big batch is walked in slices
(`forest.py`) for the event loop to run between them.

    python -m app.loops     # writes app/_loops<EXT_SUFFIX> beside this file
"""

import warnings
from pathlib import Path

import numpy as np

# Only building needs numba; pycc announces its own pending deprecation on import (INFORME: why it is used).
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from numba.pycc import CC

NON_FINITE = "a row holds NaN or an infinity (in float32): the forest answers finite rows only"

cc = CC("_loops")
cc.output_dir = str(Path(__file__).parent)


@cc.export("walk", "f8[:,:](f4[:,::1], u8[:,::1], u8[::1], f8[::1], f8[:,::1], u8[::1], intp[::1])")
def walk(
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


@cc.export("scan", "Tuple((f8[:,:], intp[:,:]))(f8[:,::1], f8[:,::1], intp)")
def scan(rows: np.ndarray, points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
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


@cc.export("project", "f8[:,:](f8[:,::1], f8[:,::1], f8[::1], f8[::1])")
def project(rows: np.ndarray, axes: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Rows onto the PCA's axes, summed feature by feature in one fixed order: a row gets the same bits
    whatever else is in its batch (a matrix product's rounding depends on the number of rows)."""
    positions = np.empty((rows.shape[0], axes.shape[1]))
    for i in range(rows.shape[0]):
        for k in range(axes.shape[1]):
            total = 0.0
            for j in range(rows.shape[1]):
                total += rows[i, j] * axes[j, k]
            positions[i, k] = (total - offset[k]) / scale[k]
    return positions


if __name__ == "__main__":
    cc.compile()
