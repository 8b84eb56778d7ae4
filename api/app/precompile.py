"""Compile serving's numba functions into their cache before the first start (the API image runs this at
build time): a container then loads the machine code from NUMBA_CACHE_DIR instead of compiling it at every
start. The functions are called through the classes that serving uses, so the cached signatures (dtypes,
layouts, read-only flags) are serving's own. Every start calls it too, before any model, so the compiled
functions' objects are frozen with the libraries' (app/main.py).

    python -m app.precompile
"""

import numpy as np

from app.forest import FlatForest
from app.neighbors import NeighborIndex
from app.projection import PcaProjection


def main() -> None:
    """Every compiled function called once: compiled into the cache, or loaded from it."""
    rows = np.zeros((2, 2))
    FlatForest(
        children=np.array([[1, 2], [1, 1], [2, 2]]),
        feature=np.zeros(3, dtype=np.uint64),
        threshold=np.zeros(3),
        value=np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]),
        roots=np.array([0]),
        depths=np.array([1]),
        n_features=2,
    ).predict_proba(rows)
    PcaProjection(np.eye(2), np.zeros(2), np.ones(2))(rows)
    NeighborIndex(rows, 1).query(rows)


if __name__ == "__main__":
    main()
